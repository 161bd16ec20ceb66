import { describe, expect, it } from "vitest";
import { CandleSeries, MAX_BARS, TRIM_BATCH } from "@/lib/candleSeries";
import type { Candle } from "@/lib/types";

const S = 1_000_000; // 1 s in µs
const T0 = 1_795_617_000_000_000;

/** A 1 s candle of ESZ6 in bucket `i` (T0 + i s) at `seq`; close and volume tell states apart. */
function c(i: number, seq: number, over: Partial<Candle> = {}): Candle {
  return {
    symbol: "ESZ6",
    interval: "1s",
    start: T0 + i * S,
    open: "100.00",
    high: "101.00",
    low: "99.00",
    close: `100.${String(seq % 100).padStart(2, "0")}`,
    volume: seq,
    trades: seq,
    seq,
    updated_at: T0 + i * S + 1,
    ...over,
  };
}

const starts = (series: CandleSeries) => series.bars().map((b) => (b.start - T0) / S);
const seqs = (series: CandleSeries) => series.bars().map((b) => b.seq);
const LATEST = { since: null, limit: 900 };

describe("CandleSeries: merge by seq", () => {
  it("never goes backwards: a lower or equal seq leaves the bar as it is", () => {
    const s = new CandleSeries("ESZ6", "1s");
    expect(s.applyLive(c(0, 1)).change).toBe("last");
    expect(s.applyLive(c(0, 2)).change).toBe("last");
    expect(s.applyLive(c(0, 1)).change).toBe("none");
    expect(s.applyLive(c(0, 2, { close: "1.00" })).change).toBe("none");
    expect(s.bar(T0)).toEqual(c(0, 2));
    // An older state of an earlier bar, arriving after newer bars, does not overwrite either.
    s.applyLive(c(1, 3));
    s.applyLive(c(1, 4));
    expect(s.applyLive(c(0, 2)).change).toBe("none");
    expect(s.applyLive(c(1, 3)).change).toBe("none");
    expect(seqs(s)).toEqual([2, 4]);
    expect(s.lastSeq).toBe(4);
  });

  it("takes a newer state of an older bar (a history row with a higher seq), and says an older bar changed", () => {
    const s = new CandleSeries("ESZ6", "1s");
    s.mergeHistory([c(0, 1), c(1, 3), c(2, 4)], LATEST);
    const r = s.mergeHistory([c(0, 2), c(1, 3), c(2, 4)], { since: T0, limit: 900 });
    expect(r.change).toBe("all");
    expect(s.bar(T0)?.seq).toBe(2);
    // Rows that are not newer change nothing.
    expect(s.mergeHistory([c(0, 1), c(1, 2)], { since: T0, limit: 900 }).change).toBe("none");
    expect(seqs(s)).toEqual([2, 3, 4]);
  });

  it("ignores candles of another symbol or interval", () => {
    const s = new CandleSeries("ESZ6", "1s");
    expect(s.applyLive(c(0, 1, { symbol: "NQZ6" })).change).toBe("none");
    expect(s.applyLive(c(0, 1, { interval: "1m" })).change).toBe("none");
    expect(s.mergeHistory([c(0, 1, { symbol: "NQZ6" })], LATEST).change).toBe("none");
    expect(s.size).toBe(0);
  });

  it("keeps bars sorted by start whatever the arrival order", () => {
    const s = new CandleSeries("ESZ6", "1s");
    s.mergeHistory([c(5, 9), c(7, 12)], LATEST);
    s.mergeHistory([c(1, 2), c(6, 10), c(3, 5)], { since: T0, limit: 900 });
    expect(starts(s)).toEqual([1, 3, 5, 6, 7]);
    expect(s.last()?.seq).toBe(12);
  });
});

describe("CandleSeries: history and live in either order", () => {
  const history = [c(0, 3), c(1, 6), c(2, 8)];
  const live = [c(2, 9), c(3, 10), c(3, 11)];
  const expected = [c(0, 3), c(1, 6), c(2, 9), c(3, 11)];

  it("history first, then live", () => {
    const s = new CandleSeries("ESZ6", "1s");
    expect(s.mergeHistory(history, LATEST).change).toBe("all");
    expect(live.map((x) => s.applyLive(x).change)).toEqual(["last", "last", "last"]);
    expect(s.bars()).toEqual(expected);
    expect(s.pending).toBeNull();
  });

  it("live first, then a history page read before or after the live states", () => {
    for (const page of [history, [...history.slice(0, 2), c(2, 9), c(3, 10)], [...history.slice(0, 2), c(2, 9), c(3, 11)]]) {
      const s = new CandleSeries("ESZ6", "1s");
      for (const x of live) s.applyLive(x);
      const r = s.mergeHistory(page, LATEST);
      expect(s.bars()).toEqual(expected);
      // The page reaches seq 8 at least and the first live state is 9: nothing was skipped.
      expect(r.refetch).toBeNull();
    }
  });

  it("live first, a history page that is behind the first live state: refetch from its newest row", () => {
    const s = new CandleSeries("ESZ6", "1s");
    s.applyLive(c(3, 12)); // states 9..11 (the final state of bucket 2?) were never seen
    const r = s.mergeHistory(history, LATEST);
    expect(r.refetch).toEqual({ since: T0 + 2 * S });
    // A page read once the database has stored them settles it.
    const r2 = s.mergeHistory([c(2, 10), c(3, 11)], { since: T0 + 2 * S, limit: 900 });
    expect(r2.refetch).toBeNull();
    expect(s.bars()).toEqual([c(0, 3), c(1, 6), c(2, 10), c(3, 12)]);
    expect(r2.change).toBe("all");
  });
});

describe("CandleSeries: seq jumps", () => {
  it("a jump within the bar of the last seq is harmless (full states): no refetch", () => {
    const s = new CandleSeries("ESZ6", "1s");
    s.mergeHistory([c(0, 4)], LATEST);
    s.applyLive(c(1, 5));
    const r = s.applyLive(c(1, 9));
    expect(r).toEqual({ change: "last", refetch: null });
    expect(s.pending).toBeNull();
  });

  it("a jump into a new bucket: the earlier bar may have missed its final state → refetch since its start", () => {
    const s = new CandleSeries("ESZ6", "1s");
    s.mergeHistory([c(0, 4)], LATEST);
    s.applyLive(c(1, 5));
    s.applyLive(c(1, 6));
    const r = s.applyLive(c(2, 9)); // 7 and 8 skipped: perhaps bucket 1's final state
    expect(r.change).toBe("last");
    expect(r.refetch).toEqual({ since: T0 + 1 * S });
    expect(s.pending).toEqual({ since: T0 + 1 * S });
    // The next update asks nothing more (the refetch is on its way), but the range stays
    // pending until a page settles it.
    expect(s.applyLive(c(2, 10)).refetch).toBeNull();
    expect(s.pending).toEqual({ since: T0 + 1 * S });
    const settle = s.mergeHistory([c(1, 8), c(2, 10)], { since: T0 + 1 * S, limit: 900 });
    expect(settle.refetch).toBeNull();
    expect(settle.change).toBe("all"); // bar 1 (older than the newest) changed
    expect(s.bar(T0 + S)?.seq).toBe(8);
    expect(s.bar(T0 + 2 * S)?.seq).toBe(10);
  });

  it("a jump with no bar behind it yet (empty history): refetch the latest page", () => {
    const s = new CandleSeries("ESZ6", "1s");
    s.mergeHistory([], LATEST);
    expect(s.applyLive(c(3, 7)).refetch).toEqual({ since: null });
    expect(s.mergeHistory([c(2, 5), c(3, 6)], LATEST).refetch).toBeNull();
    expect(seqs(s)).toEqual([5, 7]);
  });

  it("the first live candle after a seq-1 history is not a jump", () => {
    const s = new CandleSeries("ESZ6", "1s");
    s.mergeHistory([], LATEST);
    expect(s.applyLive(c(0, 1)).refetch).toBeNull();
  });

  it("a page from a database that is still behind leaves the range stale (the caller retries)", () => {
    const s = new CandleSeries("ESZ6", "1s");
    s.mergeHistory([c(0, 4)], LATEST);
    s.applyLive(c(1, 5));
    s.applyLive(c(2, 9));
    // The database has stored up to seq 6 only: states 7 and 8 are not in it yet.
    const r = s.mergeHistory([c(1, 6)], { since: T0 + S, limit: 900 });
    expect(r.refetch).toEqual({ since: T0 + S });
    expect(s.bar(T0 + S)?.seq).toBe(6);
    // A page that starts after the stale bar does not settle it.
    expect(s.mergeHistory([c(2, 9)], { since: T0 + 2 * S, limit: 900 }).refetch).toEqual({ since: T0 + S });
    expect(s.mergeHistory([c(1, 8), c(2, 9)], { since: T0 + S, limit: 900 }).refetch).toBeNull();
  });

  it("a full since-page stops before the present: the refetch goes on from its last row", () => {
    const s = new CandleSeries("ESZ6", "1s");
    s.mergeHistory([c(0, 1)], LATEST);
    s.applyLive(c(10, 50));
    expect(s.pending).toEqual({ since: T0 });
    const r = s.mergeHistory([c(0, 2), c(1, 3), c(2, 4)], { since: T0, limit: 3 });
    expect(r.refetch).toEqual({ since: T0 + 2 * S });
    const r2 = s.mergeHistory([c(2, 5), c(9, 49)], { since: T0 + 2 * S, limit: 3 });
    expect(r2.refetch).toBeNull();
    expect(starts(s)).toEqual([0, 1, 2, 9, 10]);
  });

  it("jumps add up: the earliest start and the highest skipped seq", () => {
    const s = new CandleSeries("ESZ6", "1s");
    s.mergeHistory([c(0, 1)], LATEST);
    s.applyLive(c(1, 3));
    s.applyLive(c(2, 6));
    expect(s.pending).toEqual({ since: T0 });
    // Settling needs a row at seq 5 or more from bucket 0 on.
    expect(s.mergeHistory([c(0, 2), c(1, 4)], { since: T0, limit: 900 }).refetch).toEqual({ since: T0 });
    expect(s.mergeHistory([c(0, 2), c(1, 5)], { since: T0, limit: 900 }).refetch).toBeNull();
  });
});

describe("CandleSeries: resync (after a snapshot)", () => {
  it("always asks for a refetch, from the bar of the last seq when nothing was skipped", () => {
    const s = new CandleSeries("ESZ6", "1s");
    s.mergeHistory([c(0, 1), c(1, 2)], LATEST);
    const r = s.resync(c(1, 2));
    expect(r).toEqual({ change: "none", refetch: { since: T0 + S } });
    expect(s.pending).toBeNull();
  });

  it("an empty series asks for the latest page", () => {
    const s = new CandleSeries("ESZ6", "1s");
    expect(s.resync(undefined).refetch).toEqual({ since: null });
  });

  it("applies the snapshot's candle; states missed while disconnected make the bar before stale", () => {
    const s = new CandleSeries("ESZ6", "1s");
    s.mergeHistory([c(0, 1), c(1, 2)], LATEST);
    const r = s.resync(c(5, 20)); // the feed was down from seq 3 to 19
    expect(r.change).toBe("last");
    expect(r.refetch).toEqual({ since: T0 + S });
    expect(s.pending).toEqual({ since: T0 + S });
    const page = [c(1, 3), c(2, 6), c(4, 15), c(5, 19)];
    const settle = s.mergeHistory(page, { since: T0 + S, limit: 900 });
    expect(settle.refetch).toBeNull();
    expect(starts(s)).toEqual([0, 1, 2, 4, 5]);
    expect(seqs(s)).toEqual([1, 3, 6, 15, 20]);
  });

  it("a server whose series went back (restored from an older point): its state wins, newer bars go", () => {
    const s = new CandleSeries("ESZ6", "1s");
    s.mergeHistory([c(0, 1), c(1, 2), c(2, 3), c(3, 4)], LATEST);
    // The restarted server's snapshot: bucket 1 at seq 2 < 4 seen (it lost states 3 and 4).
    const r = s.resync(c(1, 2, { close: "99.50" }));
    expect(r.change).toBe("all");
    expect(starts(s)).toEqual([0, 1]);
    expect(s.bar(T0 + S)?.close).toBe("99.50");
    expect(s.lastSeq).toBe(2);
    expect(r.refetch).toEqual({ since: T0 + S });
    // Live updates of the restored timeline apply again.
    expect(s.applyLive(c(2, 3, { close: "98.00" })).change).toBe("last");
    expect(s.bar(T0 + 2 * S)?.close).toBe("98.00");
  });
});

describe("CandleSeries: bounded bars and what to redraw", () => {
  it("keeps at most maxBars: the oldest are dropped in a batch, and the chart redraws all", () => {
    expect(MAX_BARS["1s"]).toBe(900);
    expect(MAX_BARS["1m"]).toBe(600);
    const s = new CandleSeries("ESZ6", "1s");
    expect(s.maxBars).toBe(900);
    expect(s.trimTo).toBe(900 - TRIM_BATCH["1s"]);
    const changes: string[] = [];
    for (let i = 0; i < 2000; i++) {
      changes.push(s.applyLive(c(i, i + 1)).change);
      expect(s.size).toBeLessThanOrEqual(900);
    }
    // Every append is an "update the newest bar", except the appends that trimmed.
    const trims = changes.filter((x) => x === "all").length;
    expect(changes.filter((x) => x === "last").length).toBe(2000 - trims);
    // The first trim at the 901st bar, then one each time the bound is exceeded again.
    expect(trims).toBe(Math.floor((2000 - 901) / (TRIM_BATCH["1s"] + 1)) + 1);
    expect(s.last()?.start).toBe(T0 + 1999 * S);
    // The newest bars are kept, contiguous.
    const kept = starts(s);
    expect(kept[kept.length - 1]).toBe(1999);
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, k) => 1999 - kept.length + 1 + k));
  });

  it("a history page longer than the bound keeps its newest bars", () => {
    const s = new CandleSeries("ESZ6", "1m", { maxBars: 10, trimTo: 8 });
    const page = Array.from({ length: 25 }, (_, i) => c(i, i + 1, { interval: "1m" }));
    const r = s.mergeHistory(page, { since: null, limit: 25 });
    expect(r.change).toBe("all");
    expect(starts(s)).toEqual([17, 18, 19, 20, 21, 22, 23, 24]);
  });

  it("a stale range older than every kept bar is not read again", () => {
    const s = new CandleSeries("ESZ6", "1s", { maxBars: 4, trimTo: 3 });
    s.mergeHistory([c(0, 1)], LATEST);
    s.applyLive(c(1, 5)); // stale from bucket 0
    expect(s.pending).toEqual({ since: T0 });
    for (let i = 2; i < 6; i++) s.applyLive(c(i, i + 4));
    expect(starts(s)[0]).toBeGreaterThan(0);
    expect(s.pending).toEqual({ since: T0 + starts(s)[0] * S });
  });

  it("reports 'last' only for the newest bar, 'all' when an older bar changes or two bars are added", () => {
    const s = new CandleSeries("ESZ6", "1s");
    expect(s.mergeHistory([c(0, 1)], LATEST).change).toBe("last"); // one bar on an empty chart
    expect(s.applyLive(c(0, 2)).change).toBe("last"); // the newest bar changed
    expect(s.applyLive(c(1, 3)).change).toBe("last"); // one new newest bar
    expect(s.mergeHistory([c(0, 2), c(1, 3), c(2, 4)], { since: T0, limit: 900 }).change).toBe("last"); // only bar 2 is new
    expect(s.mergeHistory([c(3, 5), c(4, 6)], { since: T0 + 3 * S, limit: 900 }).change).toBe("all"); // two bars added
    expect(s.mergeHistory([c(2, 5, { close: "1.00" })], { since: T0 + 2 * S, limit: 900 }).change).toBe("all"); // an older bar
    expect(s.mergeHistory([], { since: T0, limit: 900 }).change).toBe("none");
  });
});
