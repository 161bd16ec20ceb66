import { describe, expect, it } from "vitest";
import { Blotter, type BlotterFill } from "@/lib/blotter";

const T0 = 1_795_617_000_000_000;
const fill = (account: string, symbol: string, seq: number, ts = T0 + seq): BlotterFill => ({
  account, symbol, seq, fill_id: `F-${symbol}-${seq}`, order_id: "o", side: "buy", price: "100", qty: 1, ts,
});

describe("attack: a lane's fills held ahead of a hole, then the hole filled by a page", () => {
  it("counts the fills already held beyond the hole once a page fills it (the lane does not stay stuck)", () => {
    // ACC1 has older pages; a new lane (ZNH7) appears while the page was away: read from its start.
    const b = new Blotter({ pages: { ACC1: { fills: [fill("ACC1", "ESZ6", 50)], next: "cursor-1" } }, lanes: { "fills:ACC1:ESZ6": 50 } });
    b.noteServerSeqs({ "fills:ACC1:ESZ6": 50, "fills:ACC1:ZNH7": 3 });
    expect(b.laneSeq("fills:ACC1:ZNH7")).toBe(0);
    // A live fill of the lane arrives before its since_seq read answers.
    b.addFill(fill("ACC1", "ZNH7", 4));
    // "Load more" answers first, and its (back-dated) rows hold the lane's fills 1..3.
    b.addPage("ACC1", { fills: [fill("ACC1", "ZNH7", 3, T0 - 3), fill("ACC1", "ZNH7", 2, T0 - 4), fill("ACC1", "ZNH7", 1, T0 - 5)], next: null });
    // Expected: 1..4 are all held, so the lane is complete up to 4.
    expect(b.laneSeq("fills:ACC1:ZNH7")).toBe(4);
    // And the since_seq read that answers late (1..4 again) cannot unstick it either:
    for (const s of [1, 2, 3, 4]) b.addFill(fill("ACC1", "ZNH7", s));
    b.addFill(fill("ACC1", "ZNH7", 5));
    b.noteServerSeqs({ "fills:ACC1:ESZ6": 50, "fills:ACC1:ZNH7": 5 });
    expect(b.laneSeq("fills:ACC1:ZNH7")).toBe(5);
    expect(b.view().refilling).toBe(0);
  });
});

describe("attack: the visibility cutoff and a page with no rows", () => {
  it("an empty page that still has a cursor does not hide every row (live fills included)", () => {
    const b = new Blotter({
      pages: {
        ACC1: { fills: [fill("ACC1", "ESZ6", 2), fill("ACC1", "ESZ6", 1)], next: null },
        ACC2: { fills: [], next: "cursor-from-a-quirky-server" },
      },
      lanes: { "fills:ACC1:ESZ6": 2 },
    });
    b.addFill(fill("ACC1", "ESZ6", 3)); // a live fill, newer than anything
    // Expected: a page without rows says nothing about fill times, so nothing is hidden by it.
    expect(b.view().rows.map((r) => r.seq)).toEqual([3, 2, 1]);
  });
});
