import { describe, expect, it } from "vitest";
import {
  MAX_POINTS,
  PnlSeries,
  TRIM_BATCH,
  decSign,
  decValue,
  fmtPnl,
  isPnlPoint,
  toChartData,
  toChartDatum,
  type PnlPoint,
} from "@/lib/pnlSeries";
import type { Interval } from "@/lib/types";

const T0 = 1_795_617_000_000_000; // a whole minute, µs
const S = 1_000_000;

/** The 1 s sample of second `i` (seq = its sample time in s, total as given). */
function p(i: number, total = `${i}.25`, over: Partial<PnlPoint> = {}): PnlPoint {
  return {
    account: "ACC1",
    interval: "1s",
    start: T0 + i * S,
    realized: "10",
    unrealized: total,
    total,
    seq: T0 / S + i,
    ...over,
  };
}

/** The 1 min bucket `m`, as sampled at second `sec` of it. */
function m(minute: number, sec: number, total: string): PnlPoint {
  return {
    account: "ACC1",
    interval: "1m",
    start: T0 + minute * 60 * S,
    realized: "0",
    unrealized: total,
    total,
    seq: T0 / S + minute * 60 + sec,
  };
}

const totals = (s: PnlSeries) => s.points().map((x) => x.total);
const starts = (s: PnlSeries) => s.points().map((x) => (x.start - T0) / S);

describe("PnlSeries ordering and seq", () => {
  it("keeps points oldest first whatever order they arrive in", () => {
    const s = new PnlSeries("ACC1", "1s");
    s.applyLive(p(5));
    s.applyLive(p(2));
    s.mergeHistory([p(9), p(1), p(7)]);
    s.applyLive(p(3));
    expect(starts(s)).toEqual([1, 2, 3, 5, 7, 9]);
    expect(s.last()?.total).toBe("9.25");
    expect(s.lastSeq).toBe(T0 / S + 9);
  });

  it("replaces a bucket only with a higher seq; equal and older samples are ignored", () => {
    const s = new PnlSeries("ACC1", "1m");
    expect(s.applyLive(m(0, 10, "100")).change).toBe("last");
    expect(s.applyLive(m(0, 20, "120")).change).toBe("last");
    // An older state of the same minute (late, or from a page read earlier): ignored.
    const old = s.applyLive(m(0, 15, "115"));
    expect(old).toEqual({ change: "none", changed: [], dropped: 0 });
    // The same state again: nothing changes.
    expect(s.applyLive(m(0, 20, "999")).change).toBe("none");
    expect(totals(s)).toEqual(["120"]);
    expect(s.mergeHistory([m(0, 5, "50"), m(0, 20, "999")]).change).toBe("none");
    expect(totals(s)).toEqual(["120"]);
    // A newer one replaces it.
    expect(s.applyLive(m(0, 59, "159")).change).toBe("last");
    expect(totals(s)).toEqual(["159"]);
  });

  it("within one page, the higher seq of a bucket wins", () => {
    const s = new PnlSeries("ACC1", "1m");
    s.mergeHistory([m(0, 30, "30"), m(0, 10, "10"), m(1, 5, "65")]);
    expect(totals(s)).toEqual(["30", "65"]);
  });

  it("skips rows and samples of another account or interval", () => {
    const s = new PnlSeries("ACC1", "1s");
    expect(s.applyLive(p(1, "1", { account: "ACC2" })).change).toBe("none");
    expect(s.applyLive({ ...m(0, 1, "1") }).change).toBe("none");
    s.mergeHistory([p(2, "2", { account: "ACC2" }), p(3, "3", { interval: "1m" }), p(4, "4")]);
    expect(totals(s)).toEqual(["4"]);
  });

  it("says what changed: the newest point (update) or an older one (setData)", () => {
    const s = new PnlSeries("ACC1", "1s");
    expect(s.applyLive(p(1))).toEqual({ change: "last", changed: [T0 + S], dropped: 0 });
    expect(s.applyLive(p(2)).change).toBe("last"); // a new newest point
    expect(s.applyLive(p(2, "2.5", { seq: p(2).seq + 1 })).change).toBe("last"); // the newest replaced
    const older = s.applyLive(p(1, "1.5", { seq: p(2).seq + 2 }));
    expect(older.change).toBe("all");
    expect(older.changed).toEqual([T0 + S]);
    expect(s.applyLive(p(0)).change).toBe("all"); // inserted before the others
    const page = s.mergeHistory([p(3), p(4)]);
    expect(page.change).toBe("all"); // two new points: more than the last one
    expect(page.changed).toEqual([T0 + 3 * S, T0 + 4 * S]);
  });
});

describe("PnlSeries history and live merge", () => {
  it("history first, then live samples", () => {
    const s = new PnlSeries("ACC1", "1m");
    const page = s.mergeHistory([m(0, 59, "1"), m(1, 59, "2"), m(2, 30, "3")]);
    expect(page.change).toBe("all");
    expect(page.changed.length).toBe(3);
    // The live sample of the open minute replaces the page's row, then a new minute starts.
    expect(s.applyLive(m(2, 31, "3.5")).change).toBe("last");
    expect(s.applyLive(m(3, 0, "4")).change).toBe("last");
    // A late live sample older than the page's row of its minute is ignored.
    expect(s.applyLive(m(1, 40, "old")).change).toBe("none");
    expect(totals(s)).toEqual(["1", "2", "3.5", "4"]);
  });

  it("live samples first, then a page read before them (older states) and after them", () => {
    const s = new PnlSeries("ACC1", "1m");
    s.applyLive(m(2, 40, "live-2"));
    s.applyLive(m(3, 5, "live-3"));
    // The page was read at second 30 of minute 2: its minute-2 row is older than the live one.
    const page = s.mergeHistory([m(0, 59, "h0"), m(1, 59, "h1"), m(2, 30, "h2")]);
    expect(page.change).toBe("all");
    expect(page.changed).toEqual([T0, T0 + 60 * S]);
    expect(totals(s)).toEqual(["h0", "h1", "live-2", "live-3"]);
    // A page read later (newer states) wins over the live ones it is newer than.
    s.mergeHistory([m(2, 59, "h2-final"), m(3, 5, "h3-same")]);
    expect(totals(s)).toEqual(["h0", "h1", "h2-final", "live-3"]);
  });

  it("a gap refill merges the missed buckets in the middle", () => {
    const s = new PnlSeries("ACC1", "1s");
    for (let i = 0; i < 5; i++) s.applyLive(p(i));
    expect(s.refetchFrom()).toBe(T0 + 4 * S);
    // Disconnected for seconds 5..9, then live again from 10.
    s.applyLive(p(10));
    s.applyLive(p(11));
    const page = s.mergeHistory([5, 6, 7, 8, 9, 10, 11].map((i) => p(i)));
    expect(page.changed).toEqual([5, 6, 7, 8, 9].map((i) => T0 + i * S));
    expect(page.change).toBe("all");
    expect(starts(s)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  });

  it("refetches the latest page when it holds nothing", () => {
    expect(new PnlSeries("ACC1", "1s").refetchFrom()).toBeNull();
  });
});

describe("PnlSeries bounds", () => {
  it("exports the bounds per interval", () => {
    expect(MAX_POINTS).toEqual({ "1s": 900, "1m": 600 });
    expect(TRIM_BATCH["1s"]).toBeLessThan(MAX_POINTS["1s"]);
    const s = new PnlSeries("ACC1", "1s");
    expect(s.maxPoints).toBe(900);
    expect(s.trimTo).toBe(900 - TRIM_BATCH["1s"]);
  });

  for (const interval of ["1s", "1m"] as Interval[]) {
    it(`never holds more than MAX_POINTS["${interval}"] and drops the oldest in batches`, () => {
      const s = new PnlSeries("ACC1", interval);
      const step = interval === "1s" ? S : 60 * S;
      const at = (i: number): PnlPoint => ({ ...p(0), interval, start: T0 + i * step, seq: T0 / S + i * (step / S), total: `${i}` });
      let trims = 0;
      for (let i = 0; i < 3 * MAX_POINTS[interval]; i++) {
        const r = s.applyLive(at(i));
        expect(s.size).toBeLessThanOrEqual(MAX_POINTS[interval]);
        if (r.dropped) {
          trims++;
          expect(r.change).toBe("all");
          expect(s.size).toBe(MAX_POINTS[interval] - TRIM_BATCH[interval]);
        } else {
          expect(r.change).toBe("last");
        }
      }
      expect(trims).toBeGreaterThan(1);
      const held = s.points();
      expect(held[held.length - 1].total).toBe(`${3 * MAX_POINTS[interval] - 1}`);
      // Still ascending, no duplicates.
      for (let i = 1; i < held.length; i++) expect(held[i].start).toBeGreaterThan(held[i - 1].start);
      // A sample older than what was dropped does not come back.
      expect(s.applyLive(at(0)).change).toBe("none");
      expect(s.point(T0)).toBeUndefined();
    });
  }

  it("a page larger than the bound keeps the newest rows", () => {
    const s = new PnlSeries("ACC1", "1s", { maxPoints: 10, trimTo: 8 });
    const r = s.mergeHistory(Array.from({ length: 25 }, (_, i) => p(i)));
    expect(r.dropped).toBe(17);
    expect(starts(s)).toEqual([17, 18, 19, 20, 21, 22, 23, 24]);
    expect(r.changed).toEqual(starts(s).map((i) => T0 + i * S));
  });
});

describe("PnlSeries redraws", () => {
  it("a fresh series first clears the chart, then updates only what is new", () => {
    const s = new PnlSeries("ACC1", "1s");
    expect(s.takeRedraw()).toEqual({ kind: "all", points: [] });
    expect(s.takeRedraw()).toEqual({ kind: "none" });
    s.applyLive(p(1));
    expect(s.takeRedraw()).toEqual({ kind: "all", points: [p(1)] }); // the chart held nothing
    s.applyLive(p(2));
    s.applyLive(p(3));
    s.applyLive(p(3, "3.75", { seq: p(3).seq + 1 }));
    // Two frames' worth of samples in one redraw: both new points, in order.
    const r = s.takeRedraw();
    expect(r.kind).toBe("update");
    expect(r.kind === "update" && r.points.map((x) => x.total)).toEqual(["2.25", "3.75"]);
    // Replacing the newest drawn point is an update of it alone.
    s.applyLive(p(3, "4", { seq: p(3).seq + 2 }));
    expect(s.takeRedraw()).toEqual({ kind: "update", points: [p(3, "4", { seq: p(3).seq + 2 })] });
  });

  it("an older point that changed, a trim, or a new chart redraws everything", () => {
    const s = new PnlSeries("ACC1", "1s", { maxPoints: 5, trimTo: 3 });
    s.mergeHistory([p(1), p(2), p(3)]);
    s.takeRedraw();
    s.applyLive(p(4));
    s.applyLive(p(2, "changed", { seq: p(9).seq }));
    expect(s.takeRedraw().kind).toBe("all");
    s.applyLive(p(5));
    s.applyLive(p(6)); // 6 points > 5: trimmed to 3
    const r = s.takeRedraw();
    expect(r.kind === "all" && r.points.map((x) => (x.start - T0) / S)).toEqual([4, 5, 6]);
    expect(s.takeRedraw().kind).toBe("none");
    s.markUndrawn();
    expect(s.dirty).toBe(true);
    expect(s.takeRedraw().kind).toBe("all");
  });
});

describe("malformed input never throws", () => {
  const bad: unknown[] = [
    null,
    undefined,
    42,
    "pnl",
    [],
    {},
    { account: "ACC1", interval: "1s" },
    { ...p(1), start: "1795617001000000" },
    { ...p(1), start: Number.NaN },
    { ...p(1), start: -5 },
    { ...p(1), seq: "7" },
    { ...p(1), seq: Number.POSITIVE_INFINITY },
    { ...p(1), interval: "5m" },
  ];

  it("skips rows that are no P&L point", () => {
    const s = new PnlSeries("ACC1", "1s");
    for (const b of bad) expect(isPnlPoint(b)).toBe(false);
    expect(() => s.mergeHistory(bad)).not.toThrow();
    expect(s.size).toBe(0);
    for (const b of bad) expect(() => s.applyLive(b as PnlPoint)).not.toThrow();
    expect(s.size).toBe(0);
    expect(() => s.mergeHistory({ rows: [] } as unknown as unknown[])).not.toThrow();
  });

  it("keeps a point with malformed decimals as a gap in the line, printed as given", () => {
    const s = new PnlSeries("ACC1", "1s");
    const weird = [
      "abc",
      "1e400",
      "",
      "  ",
      "--1",
      "1.2.3",
      "NaN",
      "Infinity",
      "9".repeat(400),
      null,
      12.5,
      { x: 1 },
    ] as unknown as string[];
    weird.forEach((total, i) => {
      expect(() => s.applyLive(p(i, total, { realized: total, unrealized: total }))).not.toThrow();
    });
    expect(s.size).toBe(weird.length);
    expect(() => toChartData(s.points())).not.toThrow();
    expect(toChartData(s.points()).every((d) => !("value" in d) || Number.isFinite(d.value))).toBe(true);
    expect(toChartDatum(p(0, "abc"))).toEqual({ time: (T0 + 0) / S });
    expect(toChartDatum(p(1, "-12.5"))).toEqual({ time: T0 / S + 1, value: -12.5 });
    for (const w of weird) {
      expect(() => fmtPnl(w)).not.toThrow();
      expect(() => decSign(w)).not.toThrow();
      expect(decValue(w) === null || Number.isFinite(decValue(w))).toBe(true);
    }
    expect(fmtPnl("abc")).toBe("abc");
    expect(fmtPnl(null)).toBe("—");
    expect(fmtPnl("")).toBe("—");
    expect(decValue("9".repeat(400))).toBeNull();
    expect(decValue("1e400")).toBeNull();
    expect(decSign("abc")).toBe(0);
  });
});

describe("helpers", () => {
  it("formats money exactly, never through floats", () => {
    expect(fmtPnl("1234567.005")).toBe("1,234,567.01");
    expect(fmtPnl("-1296.875")).toBe("-1,296.88");
    expect(fmtPnl("0.1")).toBe("0.10");
    // A value a float cannot hold: still exact.
    expect(fmtPnl("90071992547409931.115")).toBe("90,071,992,547,409,931.12");
    expect(decSign("-0.01")).toBe(-1);
    expect(decSign("0.00")).toBe(0);
    expect(decSign("+3")).toBe(1);
  });

  it("chart data has strictly ascending times", () => {
    const a = p(1, "1");
    const b = { ...p(1, "2"), start: T0 + S + 500_000 }; // the same second
    const c = p(2, "3");
    expect(toChartData([a, b, c])).toEqual([
      { time: T0 / S + 1, value: 2 },
      { time: T0 / S + 2, value: 3 },
    ]);
  });
});
