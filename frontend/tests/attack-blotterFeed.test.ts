import { describe, expect, it, vi } from "vitest";
import { MAX_REFILL_PAGES, RECOVER_WAIT_MS, REFILL_PAGE } from "@/lib/blotterFeed";
import { fakeSocketsAndTimersPerTest, fillUpdate } from "./helpers";
import { fakeApi, heldFills, laneSnapshot, setupBlotter, stored } from "./blotterHelpers";

const LANE = "fills:ACC1:ESZ6";

/** The blotter holds fills 1..heldUpTo of the lane. */
function setup(heldUpTo: number, api: ReturnType<typeof fakeApi>) {
  return setupBlotter(heldFills(Array.from({ length: heldUpTo }, (_, i) => heldUpTo - i)), api);
}

fakeSocketsAndTimersPerTest();

describe("attack: a since_seq refill that ends while the lane is still behind", () => {
  it("keeps reading (with backoff) when the database lags the stream by more than the recover wait", async () => {
    let inDb = 7; // the database is a few seconds behind the stream (distributed mode under load)
    const api = fakeApi(() => inDb);
    const { blotter, ws, stop } = setup(3, api);
    ws.receive(laneSnapshot(10));
    ws.receive({ type: "recovered", v: 1, lanes: [{ key: LANE, from: 3, to: 10, recovered: false, reason: "database did not answer in time" }] });
    await vi.advanceTimersByTimeAsync(RECOVER_WAIT_MS + 100);
    inDb = 12; // the database caught up a few seconds later
    ws.receive(fillUpdate("ACC1", 11));
    ws.receive(fillUpdate("ACC1", 12));
    await vi.advanceTimersByTimeAsync(60_000);
    // Expected: fills 8..10 are read once the database has them; the lane is complete and no longer "refilling".
    expect(blotter.blotter.laneSeq(LANE)).toBe(12);
    // (Rows sort by fill time; this test's live fills carry an older time than its stored ones.)
    expect(blotter.blotter.view().rows.map((r) => r.seq).sort((a, b) => b - a)).toEqual([12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
    expect(blotter.blotter.view().refilling).toBe(0);
    stop();
  });

  it("goes on past MAX_REFILL_PAGES pages when the gap is larger than one refill can read", async () => {
    const gap = 2 * REFILL_PAGE * MAX_REFILL_PAGES + 500; // more than the first refill plus the one the recover timer starts
    const api = fakeApi(() => 1 + gap);
    const { blotter, ws, stop } = setup(1, api);
    ws.receive(laneSnapshot(1 + gap));
    ws.receive({ type: "recovered", v: 1, lanes: [{ key: LANE, from: 1, to: 1 + gap, recovered: false, reason: "too many" }] });
    await vi.advanceTimersByTimeAsync(60_000);
    // Expected: the whole gap is read, in more than one refill if need be.
    expect(blotter.blotter.laneSeq(LANE)).toBe(1 + gap);
    expect(blotter.blotter.view().refilling).toBe(0);
    stop();
  });
});
