import { describe, expect, it } from "vitest";
import { FeedStore } from "@/lib/feedStore";
import { inst, snapshot } from "./helpers";

describe("attack: sparklines and repeated snapshots", () => {
  it("a snapshot that brings nothing new (e.g. the one each chart click's setTrades resubscribe answers) adds no sparkline point", () => {
    const store = new FeedStore(snapshot({ instruments: [inst("ESZ6", 5, { mid: "100.125" })] }));
    const before = store.view().sparks.ESZ6;
    for (let click = 0; click < 10; click += 1) {
      store.applySnapshot(snapshot({ instruments: [inst("ESZ6", 5, { mid: "100.125" })] }));
    }
    // Expected: the sparkline still has the one point it had (same state, same seq).
    expect(store.view().sparks.ESZ6).toEqual(before);
  });

  it("a snapshot with a newer seq but the same mid adds no flat point either", () => {
    const store = new FeedStore(snapshot({ instruments: [inst("ESZ6", 5, { mid: "100.125" })] }));
    store.applySnapshot(snapshot({ instruments: [inst("ESZ6", 6, { mid: "100.125", volume: 11 })] }));
    // Expected: like a live update with the same mid, it does not add a point.
    expect(store.view().sparks.ESZ6).toEqual([100.125]);
  });
});
