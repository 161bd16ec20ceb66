import { describe, expect, it } from "vitest";
import { FeedStore, isInstrumentStale, SPARK_POINTS } from "@/lib/feedStore";
import type { UpdateMessage } from "@/lib/types";
import { fillUpdate, inst, instUpdate, pos, snapshot } from "./helpers";

describe("FeedStore: market lane", () => {
  it("applies a newer seq, ignores an older or equal one", () => {
    const store = new FeedStore(snapshot());
    expect(store.applyUpdate(instUpdate(inst("ESZ6", 6, { bid: "101.00" })))).toBe("applied");
    expect(store.instrument("ESZ6")?.bid).toBe("101.00");
    // out of date: an older state arriving late must not overwrite the newer one
    expect(store.applyUpdate(instUpdate(inst("ESZ6", 4, { bid: "99.00" })))).toBe("old");
    expect(store.applyUpdate(instUpdate(inst("ESZ6", 6, { bid: "98.00" })))).toBe("old");
    expect(store.instrument("ESZ6")?.bid).toBe("101.00");
    expect(store.instrument("ESZ6")?.seq).toBe(6);
  });

  it("accepts seq jumps (conflated full states)", () => {
    const store = new FeedStore(snapshot());
    expect(store.applyUpdate(instUpdate(inst("ESZ6", 50, { last: "105.00" })))).toBe("applied");
    expect(store.instrument("ESZ6")?.last).toBe("105.00");
    expect(store.awaitingSnapshot).toBe(false);
  });

  it("ignores old position and candle states, adds new instruments", () => {
    const store = new FeedStore(snapshot());
    const old: UpdateMessage = { type: "update", v: 1, kind: "position", key: "pos:ACC1:ESZ6", seq: 1, ingest_ts: 0, data: pos("ACC1", "ESZ6", 1, { net_qty: 9 }) };
    expect(store.applyUpdate(old)).toBe("old");
    expect(store.view().positions[0].net_qty).toBe(1);
    const candle = (seq: number, close: string): UpdateMessage => ({
      type: "update", v: 1, kind: "candle", key: "candle:ESZ6:1s", seq, ingest_ts: 0,
      data: { symbol: "ESZ6", interval: "1s", start: 1, open: "1", high: "2", low: "1", close, volume: 1, trades: 1, seq, updated_at: 1 },
    });
    expect(store.applyUpdate(candle(3, "2"))).toBe("applied");
    expect(store.applyUpdate(candle(2, "1"))).toBe("old");
    expect(store.view().candles["ESZ6:1s"].close).toBe("2");
    expect(store.applyUpdate(instUpdate(inst("CLF7", 1)))).toBe("applied");
    expect(store.view().instruments.map((s) => s.symbol)).toEqual(["CLF7", "ESZ6", "NQZ6"]);
  });

  it("records tick direction and sparkline points", () => {
    const store = new FeedStore(snapshot());
    store.applyUpdate(instUpdate(inst("ESZ6", 6, { bid: "100.25", last: "99.75", mid: "100.5" })));
    const ticks = store.view().ticks.ESZ6;
    expect(ticks.bid?.dir).toBe(1);
    expect(ticks.last?.dir).toBe(-1);
    expect(ticks.ask).toBeUndefined();
    expect(store.view().sparks.ESZ6).toEqual([100.125, 100.5]);
    for (let i = 0; i < SPARK_POINTS + 10; i++) store.applyUpdate(instUpdate(inst("ESZ6", 7 + i, { mid: String(200 + i) })));
    expect(store.view().sparks.ESZ6.length).toBe(SPARK_POINTS);
    expect(store.view().sparks.ESZ6.at(-1)).toBe(200 + SPARK_POINTS + 9);
  });

  it("keeps the view object stable until something changes", () => {
    const store = new FeedStore(snapshot());
    const a = store.view();
    expect(store.view()).toBe(a);
    store.applyUpdate(instUpdate(inst("ESZ6", 4)));
    expect(store.view()).toBe(a);
    store.applyUpdate(instUpdate(inst("ESZ6", 9)));
    expect(store.view()).not.toBe(a);
  });

  it("keeps the identity of the parts that did not change", () => {
    const store = new FeedStore(snapshot());
    const a = store.view();
    store.applyUpdate(instUpdate(inst("ESZ6", 9, { bid: "100.25" })));
    const b = store.view();
    expect(b.instruments).not.toBe(a.instruments);
    expect(b.ticks).not.toBe(a.ticks);
    expect(b.positions).toBe(a.positions);
    expect(b.accounts).toBe(a.accounts);
    store.applyUpdate(fillUpdate("ACC1", 5, pos("ACC1", "ESZ6", 3)));
    const c = store.view();
    expect(c.instruments).toBe(b.instruments);
    expect(c.positions).not.toBe(b.positions);
  });

  it("a snapshot never moves a key back, and drops the keys it no longer holds", () => {
    const store = new FeedStore(snapshot());
    store.applyUpdate(instUpdate(inst("ESZ6", 9, { bid: "101.00" })));
    store.applyUpdate(fillUpdate("ACC1", 5, pos("ACC1", "ESZ6", 7, { net_qty: 5 })));
    // A snapshot from a lagging mirror: ESZ6 at seq 6, the position at 3, the lane at 4; NQZ6
    // is gone, CLF7 is new.
    store.applySnapshot(
      snapshot({
        instruments: [inst("ESZ6", 6, { bid: "99.00" }), inst("CLF7", 2)],
        positions: [pos("ACC1", "ESZ6", 3, { net_qty: 1 })],
        accounts: [{ account: "ACC1", symbol: "ESZ6", fill_seq: 4 }],
      }),
    );
    const v = store.view();
    expect(v.instruments.map((s) => [s.symbol, s.seq, s.bid])).toEqual([["CLF7", 2, "100.00"], ["ESZ6", 9, "101.00"]]);
    expect(v.positions.map((p) => [p.seq, p.net_qty])).toEqual([[7, 5]]);
    expect(store.fillSeq("fills:ACC1:ESZ6")).toBe(5);
    expect(store.applyUpdate(fillUpdate("ACC1", 6))).toBe("applied");
    // A newer snapshot replaces as before.
    store.applySnapshot(snapshot({ instruments: [inst("ESZ6", 12, { bid: "102.00" })] }));
    expect(store.view().instruments.map((s) => [s.seq, s.bid])).toEqual([[12, "102.00"]]);
  });

  it("marks a quiet instrument stale", () => {
    const s = inst("ESZ6", 1, { updated_at: 1_000_000_000 }); // 1,000,000 ms
    expect(isInstrumentStale(s, 1_004_000, 5000)).toBe(false);
    expect(isInstrumentStale(s, 1_006_000, 5000)).toBe(true);
    expect(isInstrumentStale(inst("X", 0, { updated_at: 0 }), 1, 5000)).toBe(true);
  });
});

describe("FeedStore: account lane", () => {
  it("applies the next fill and its position", () => {
    const store = new FeedStore(snapshot());
    expect(store.applyUpdate(fillUpdate("ACC1", 5, pos("ACC1", "ESZ6", 3, { net_qty: 2 })))).toBe("applied");
    expect(store.fillSeq("fills:ACC1:ESZ6")).toBe(5);
    expect(store.view().positions[0].net_qty).toBe(2);
  });

  it("ignores a duplicate fill (seq <= last)", () => {
    const store = new FeedStore(snapshot());
    expect(store.applyUpdate(fillUpdate("ACC1", 4))).toBe("old");
    expect(store.applyUpdate(fillUpdate("ACC1", 2))).toBe("old");
    expect(store.fillSeq("fills:ACC1:ESZ6")).toBe(4);
  });

  it("reports a gap, then ignores fills until a snapshot arrives", () => {
    const store = new FeedStore(snapshot());
    expect(store.applyUpdate(fillUpdate("ACC1", 7))).toBe("gap");
    expect(store.awaitingSnapshot).toBe(true);
    expect(store.fillSeq("fills:ACC1:ESZ6")).toBe(4);
    expect(store.applyUpdate(fillUpdate("ACC1", 8))).toBe("ignored");
    // market updates still apply meanwhile
    expect(store.applyUpdate(instUpdate(inst("ESZ6", 9)))).toBe("applied");
    store.applySnapshot(snapshot({ accounts: [{ account: "ACC1", symbol: "ESZ6", fill_seq: 8 }] }));
    expect(store.awaitingSnapshot).toBe(false);
    expect(store.applyUpdate(fillUpdate("ACC1", 8))).toBe("old");
    expect(store.applyUpdate(fillUpdate("ACC1", 9))).toBe("applied");
  });

  it("each (account, instrument) lane has its own seq", () => {
    const store = new FeedStore(
      snapshot({
        accounts: [
          { account: "ACC1", symbol: "ESZ6", fill_seq: 4 },
          { account: "ACC1", symbol: "NQZ6", fill_seq: 9 },
          { account: "ACC2", symbol: "ESZ6", fill_seq: 1 },
        ],
      }),
    );
    expect(store.view().accounts).toEqual({ ACC1: 13, ACC2: 1 });
    expect(store.applyUpdate(fillUpdate("ACC1", 10, undefined, "NQZ6"))).toBe("applied");
    expect(store.applyUpdate(fillUpdate("ACC1", 5, undefined, "ESZ6"))).toBe("applied");
    expect(store.applyUpdate(fillUpdate("ACC2", 2, undefined, "ESZ6"))).toBe("applied");
    expect(store.applyUpdate(fillUpdate("ACC1", 1, undefined, "CLF7"))).toBe("applied"); // a new lane
    expect(store.fillSeq("fills:ACC1:NQZ6")).toBe(10);
    expect(store.view().accounts).toEqual({ ACC1: 16, ACC2: 2 });
    expect(store.applyUpdate(fillUpdate("ACC1", 12, undefined, "NQZ6"))).toBe("gap");
  });

  it("also follows a server with one fill lane per account (fills:<account>)", () => {
    const store = new FeedStore(snapshot({ accounts: [{ account: "ACC1", fill_seq: 4 }] }));
    const legacy = (seq: number) => ({ ...fillUpdate("ACC1", seq), key: "fills:ACC1" });
    expect(store.applyUpdate(legacy(5))).toBe("applied");
    expect(store.fillSeq("fills:ACC1")).toBe(5);
    expect(store.applyUpdate(legacy(7))).toBe("gap");
  });

  it("a new lane starts at seq 1", () => {
    const store = new FeedStore(snapshot());
    expect(store.applyUpdate(fillUpdate("ACC9", 1))).toBe("applied");
    const other = new FeedStore(snapshot());
    expect(other.applyUpdate(fillUpdate("ACC9", 2))).toBe("gap");
  });

  it("a snapshot replaces the state", () => {
    const store = new FeedStore(snapshot());
    store.applyUpdate(instUpdate(inst("ESZ6", 50)));
    store.applySnapshot(snapshot({ instruments: [inst("ESZ6", 60)], positions: [], accounts: [] }));
    const v = store.view();
    expect(v.instruments.map((s) => [s.symbol, s.seq])).toEqual([["ESZ6", 60]]);
    expect(v.positions).toEqual([]);
    expect(v.sparks.NQZ6).toBeUndefined();
    expect(store.snapshots).toBe(2);
  });
});
