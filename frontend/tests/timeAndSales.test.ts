import { describe, expect, it } from "vitest";
import { comparePrints, TAS_MAX, TimeAndSales, tradesUrl } from "@/lib/timeAndSales";
import type { TradePrint } from "@/lib/types";

const T0 = 1_795_617_000_000_000;

/** Print number n of ESZ6 (event id feed:n, ts T0 + n ms); `live` adds the seq n. */
function print(n: number, live: boolean, over: Partial<TradePrint> = {}): TradePrint {
  return {
    symbol: "ESZ6",
    ...(live ? { seq: n } : {}),
    event_id: `feed:${n}`,
    price: `${6850 + n}.25`,
    qty: n,
    aggressor: n % 2 ? "buy" : "sell",
    ts: T0 + n * 1000,
    ...over,
  };
}

/** A history page as GET /api/trades answers it: prints from..to, newest first, no seq. */
function page(from: number, to: number): TradePrint[] {
  const rows: TradePrint[] = [];
  for (let n = to; n >= from; n--) rows.push(print(n, false));
  return rows;
}

const ids = (tas: TimeAndSales) => tas.prints().map((p) => p.event_id);
const range = (from: number, to: number) => {
  const out: string[] = [];
  for (let n = to; n >= from; n--) out.push(`feed:${n}`);
  return out;
};

describe("TimeAndSales", () => {
  it("builds the history URL with the symbol encoded", () => {
    expect(tradesUrl("ESZ6")).toBe("/api/trades?symbol=ESZ6&limit=100");
    expect(tradesUrl("A&B", 5)).toBe("/api/trades?symbol=A%26B&limit=5");
  });

  it("merges a page and live prints newest first, deduped by event id", () => {
    const tas = new TimeAndSales("ESZ6");
    expect(tas.mergeHistory(page(1, 5))).toEqual({ changed: true, refetch: false });
    expect(ids(tas)).toEqual(range(1, 5));
    // The stream had already sent print 5 (the page was read after it): a duplicate, and the
    // proof that the page and the stream meet.
    expect(tas.applyLive(print(5, true))).toEqual({ changed: false, refetch: false });
    expect(tas.joined).toBe(true);
    expect(tas.applyLive(print(6, true))).toEqual({ changed: true, refetch: false });
    expect(tas.applyLive(print(7, true))).toEqual({ changed: true, refetch: false });
    expect(ids(tas)).toEqual(range(1, 7));
    expect(tas.prints()[0]).toMatchObject({ seq: 7, price: "6857.25", qty: 7, aggressor: "buy" });
    // The same page again changes nothing.
    expect(tas.mergeHistory(page(1, 5))).toEqual({ changed: false, refetch: false });
    expect(ids(tas)).toEqual(range(1, 7));
  });

  it("returns the same array until something changes", () => {
    const tas = new TimeAndSales("ESZ6");
    tas.mergeHistory(page(1, 3));
    const a = tas.prints();
    expect(tas.prints()).toBe(a);
    tas.mergeHistory(page(1, 3));
    expect(tas.prints()).toBe(a);
    tas.applyLive(print(4, true));
    const b = tas.prints();
    expect(b).not.toBe(a);
    expect(a.length).toBe(3); // an earlier view is never changed
    expect(b.length).toBe(4);
    // Rows keep their identity (stable for memoized rows).
    expect(b[1]).toBe(a[0]);
  });

  it("the first live print after a page the stream does not meet asks for a refetch, once", () => {
    const tas = new TimeAndSales("ESZ6");
    tas.mergeHistory(page(1, 5));
    // Print 6 was stored after the page was read, before the subscription was in place: the
    // stream starts at 7. Nothing tells the two apart but a page that holds 7.
    expect(tas.applyLive(print(7, true))).toEqual({ changed: true, refetch: true });
    expect(tas.joined).toBe(false);
    // Following prints do not ask again (the refetch is on its way).
    expect(tas.applyLive(print(8, true))).toEqual({ changed: true, refetch: false });
    expect(ids(tas)).toEqual(["feed:8", "feed:7", ...range(1, 5)]);
    // The refetch holds 6, 7 and 8: the hole is filled and the two meet.
    expect(tas.mergeHistory(page(1, 8))).toEqual({ changed: true, refetch: false });
    expect(tas.joined).toBe(true);
    expect(ids(tas)).toEqual(range(1, 8));
    expect(tas.applyLive(print(9, true))).toEqual({ changed: true, refetch: false });
  });

  it("a page that is behind the live prints (not stored yet) asks again", () => {
    const tas = new TimeAndSales("ESZ6");
    // Live prints before the first page answered.
    expect(tas.applyLive(print(10, true))).toEqual({ changed: true, refetch: false });
    expect(tas.applyLive(print(11, true))).toEqual({ changed: true, refetch: false });
    // The page was read before 10 was stored: 10 may not be the first missing one.
    expect(tas.mergeHistory(page(1, 8))).toEqual({ changed: true, refetch: true });
    expect(ids(tas)).toEqual(["feed:11", "feed:10", ...range(1, 8)]);
    // Read again: now it holds 9 to 11.
    expect(tas.mergeHistory(page(2, 11))).toEqual({ changed: true, refetch: false });
    expect(ids(tas)).toEqual(range(1, 11));
    expect(tas.joined).toBe(true);
  });

  it("a live seq that jumps asks for a refetch, and the page fills the skipped prints", () => {
    const tas = new TimeAndSales("ESZ6");
    tas.mergeHistory(page(1, 3));
    tas.applyLive(print(3, true)); // meets
    expect(tas.applyLive(print(4, true)).refetch).toBe(false);
    // 5 to 7 were skipped for this slow client.
    expect(tas.applyLive(print(8, true))).toEqual({ changed: true, refetch: true });
    expect(tas.joined).toBe(false);
    expect(ids(tas)).toEqual(["feed:8", ...range(1, 4)]);
    expect(tas.applyLive(print(9, true)).refetch).toBe(false);
    // A page read before 8 was stored does not fill it for sure: again.
    expect(tas.mergeHistory(page(1, 7))).toEqual({ changed: true, refetch: true });
    expect(tas.mergeHistory(page(1, 9))).toEqual({ changed: false, refetch: false });
    expect(tas.joined).toBe(true);
    expect(ids(tas)).toEqual(range(1, 9));
  });

  it("a jump after a reconnect whose page already held the prints needs nothing more", () => {
    const tas = new TimeAndSales("ESZ6");
    tas.mergeHistory(page(1, 2));
    tas.applyLive(print(2, true));
    tas.applyLive(print(3, true));
    // Disconnected; the caller read a page after the new snapshot, which holds 4 to 6.
    expect(tas.mergeHistory(page(1, 6))).toEqual({ changed: true, refetch: false });
    // The stream goes on at 6 (already held from the page) and 7: no hole.
    expect(tas.applyLive(print(6, true))).toEqual({ changed: false, refetch: false });
    expect(tas.applyLive(print(7, true))).toEqual({ changed: true, refetch: false });
    expect(ids(tas)).toEqual(range(1, 7));
  });

  it("is bounded: the oldest prints go", () => {
    const tas = new TimeAndSales("ESZ6");
    expect(tas.max).toBe(TAS_MAX);
    tas.mergeHistory(page(1, 100));
    tas.applyLive(print(100, true));
    for (let n = 101; n <= 250; n++) tas.applyLive(print(n, true));
    expect(tas.size).toBe(TAS_MAX);
    expect(ids(tas)).toEqual(range(51, 250));
    // A print older than all of them changes nothing.
    expect(tas.applyLive(print(3, false, { event_id: "other:1" }))).toEqual({ changed: false, refetch: false });
    expect(tas.size).toBe(TAS_MAX);
    // An evicted print is new again (it is not remembered forever).
    const small = new TimeAndSales("ESZ6", 3);
    small.mergeHistory(page(1, 5), 100);
    expect(ids(small)).toEqual(range(3, 5));
  });

  it("a full page that holds none of the prints held drops the older ones (no silent hole)", () => {
    const tas = new TimeAndSales("ESZ6", 200, 4);
    tas.mergeHistory(page(1, 4));
    tas.applyLive(print(4, true));
    tas.applyLive(print(5, true));
    // A long disconnect: prints 6 to 19 went by; the page holds only the newest 4.
    expect(tas.mergeHistory(page(16, 19))).toEqual({ changed: true, refetch: false });
    expect(ids(tas)).toEqual(range(16, 19));
    // A page that is not full is the whole history: nothing is dropped.
    const short = new TimeAndSales("ESZ6", 200, 4);
    short.mergeHistory(page(1, 2));
    short.mergeHistory(page(5, 6));
    expect(ids(short)).toEqual(["feed:6", "feed:5", "feed:2", "feed:1"]);
  });

  it("ignores other instruments and malformed rows", () => {
    const tas = new TimeAndSales("ESZ6");
    expect(tas.applyLive(print(1, true, { symbol: "NQZ6" }))).toEqual({ changed: false, refetch: false });
    const bad = [{ symbol: "ESZ6" }, null, print(2, false, { symbol: "NQZ6" }), print(3, false)] as unknown as TradePrint[];
    expect(tas.mergeHistory(bad)).toEqual({ changed: true, refetch: false });
    expect(ids(tas)).toEqual(["feed:3"]);
  });

  it("orders by exchange time, then seq, then event id", () => {
    const tas = new TimeAndSales("ESZ6");
    tas.mergeHistory(page(1, 3));
    tas.applyLive(print(3, true));
    // A late print (dated before the others) goes below them, not on top.
    tas.applyLive(print(4, true, { ts: T0 + 1500 }));
    expect(ids(tas)).toEqual(["feed:3", "feed:2", "feed:4", "feed:1"]);
    // Same time: by sequence, as numbers (feed:10 after feed:9).
    const a = print(9, false, { ts: T0 });
    const b = print(10, false, { ts: T0 });
    expect(comparePrints(b, a)).toBeLessThan(0);
    expect(comparePrints(a, b)).toBeGreaterThan(0);
    expect(comparePrints({ ...a, seq: 5 }, { ...b, seq: 4 })).toBeLessThan(0);
  });
});
