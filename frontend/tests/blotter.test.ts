import { describe, expect, it } from "vitest";
import { Blotter, type BlotterFill } from "@/lib/blotter";

const T0 = 1_795_617_000_000_000;

function f(account: string, symbol: string, seq: number, ts = T0 + seq * 1_000_000): BlotterFill {
  return { account, symbol, seq, fill_id: `${account}-${symbol}-${seq}`, order_id: "o", side: "buy", price: "1.00", qty: 1, ts };
}

const keys = (b: Blotter) => b.view().rows.map((r) => `${r.account}:${r.symbol}:${r.seq}`);

describe("Blotter", () => {
  it("starts from the first pages, newest first, and knows where each lane is complete", () => {
    const b = new Blotter({
      pages: { ACC1: { fills: [f("ACC1", "ESZ6", 3), f("ACC1", "NQZ6", 1, T0 + 2_500_000), f("ACC1", "ESZ6", 2)], next: null } },
      lanes: { "fills:ACC1:ESZ6": 3, "fills:ACC1:NQZ6": 1 },
    });
    expect(keys(b)).toEqual(["ACC1:ESZ6:3", "ACC1:NQZ6:1", "ACC1:ESZ6:2"]);
    expect(b.laneSeq("fills:ACC1:ESZ6")).toBe(3);
    expect(b.view().more).toBe(false);
  });

  it("takes live fills once, in any order, and counts a lane complete only when its hole is filled", () => {
    const b = new Blotter({ pages: { ACC1: { fills: [f("ACC1", "ESZ6", 1)], next: null } }, lanes: {} });
    expect(b.addFill(f("ACC1", "ESZ6", 2))).toBe(true);
    expect(b.addFill(f("ACC1", "ESZ6", 2))).toBe(false); // a duplicate
    expect(b.addFill(f("ACC1", "ESZ6", 5))).toBe(true); // 3 and 4 missing
    expect(b.laneSeq("fills:ACC1:ESZ6")).toBe(2);
    b.addFill(f("ACC1", "ESZ6", 4));
    expect(b.laneSeq("fills:ACC1:ESZ6")).toBe(2);
    b.addFill(f("ACC1", "ESZ6", 3));
    expect(b.laneSeq("fills:ACC1:ESZ6")).toBe(5);
    expect(keys(b)).toEqual(["ACC1:ESZ6:5", "ACC1:ESZ6:4", "ACC1:ESZ6:3", "ACC1:ESZ6:2", "ACC1:ESZ6:1"]);
  });

  it("names the lanes behind a snapshot, and the accounts it has no page of", () => {
    const b = new Blotter({ pages: { ACC1: { fills: [f("ACC1", "ESZ6", 4)], next: null } }, lanes: { "fills:ACC1:ESZ6": 4 } });
    const behind = b.noteServerSeqs({ "fills:ACC1:ESZ6": 9, "fills:ACC1:CLF7": 2, "fills:ACC2:ESZ6": 7 });
    // ACC1's lanes are filled from what is held (CLF7 is new: from its start); ACC2 has no page
    // yet: its first page, read after this snapshot, covers its lanes.
    expect(behind).toEqual({ lanes: { "fills:ACC1:ESZ6": 4, "fills:ACC1:CLF7": 0 }, accounts: ["ACC2"] });
    expect(b.view().refilling).toBe(2);
    for (const seq of [5, 6, 7, 8, 9]) b.addFill(f("ACC1", "ESZ6", seq));
    b.addFill(f("ACC1", "CLF7", 1));
    b.addFill(f("ACC1", "CLF7", 2));
    expect(b.holes()).toEqual({});
    expect(b.view().refilling).toBe(0);
  });

  it("asks to recover the lanes it holds, the most active first, within a bound", () => {
    const b = new Blotter({ pages: {}, lanes: { "fills:A:X": 3, "fills:B:X": 9, "fills:C:X": 0, "fills:D:X": 5 } });
    expect(b.recoverFrom(2)).toEqual({ "fills:B:X": 9, "fills:D:X": 5 });
    expect(Object.keys(b.recoverFrom(10))).toHaveLength(3); // a lane at 0 has nothing to resume
  });

  it("hides rows older than an account's unread pages, and shows them once read", () => {
    // ACC1 has read back to T0+10 s and has more; ACC2 has everything of the day.
    const b = new Blotter({
      pages: {
        ACC1: { fills: [f("ACC1", "ESZ6", 20, T0 + 20_000_000), f("ACC1", "ESZ6", 19, T0 + 10_000_000)], next: "c1" },
        ACC2: { fills: [f("ACC2", "ESZ6", 2, T0 + 15_000_000), f("ACC2", "ESZ6", 1, T0 + 5_000_000)], next: null },
      },
      lanes: {},
    });
    // ACC2's fill at T0+5 s is not shown: ACC1 may have fills between it and T0+10 s.
    expect(keys(b)).toEqual(["ACC1:ESZ6:20", "ACC2:ESZ6:2", "ACC1:ESZ6:19"]);
    expect(b.view().more).toBe(true);
    expect(b.accountsWithMore()).toEqual(["ACC1"]);
    b.addPage("ACC1", { fills: [f("ACC1", "ESZ6", 18, T0 + 6_000_000), f("ACC1", "ESZ6", 17, T0 + 1_000_000)], next: null });
    expect(keys(b)).toEqual(["ACC1:ESZ6:20", "ACC2:ESZ6:2", "ACC1:ESZ6:19", "ACC1:ESZ6:18", "ACC2:ESZ6:1", "ACC1:ESZ6:17"]);
    expect(b.view().more).toBe(false);
    // An older page never moves a lane's complete seq back.
    expect(b.laneSeq("fills:ACC1:ESZ6")).toBe(20);
  });

  it("keeps a stable total order for fills at the same time", () => {
    const b = new Blotter(null);
    for (const [a, s, q] of [["B", "X", 1], ["A", "Y", 1], ["A", "X", 2], ["A", "X", 1]] as const) b.addFill(f(a, s, q, T0));
    expect(keys(b)).toEqual(["A:X:2", "A:X:1", "A:Y:1", "B:X:1"]);
  });

  it("keeps the view's identity until something changes", () => {
    const b = new Blotter(null);
    const v1 = b.view();
    expect(b.view()).toBe(v1);
    b.addFill(f("A", "X", 1));
    expect(b.view()).not.toBe(v1);
    const v2 = b.view();
    b.addFill(f("A", "X", 1));
    expect(b.view()).toBe(v2);
  });

  it("drops the stream's position from the rows it keeps", () => {
    const b = new Blotter(null);
    b.addFill({ ...f("A", "X", 1), position: { net_qty: 1 } } as unknown as BlotterFill);
    expect(b.view().rows[0]).not.toHaveProperty("position");
  });
});
