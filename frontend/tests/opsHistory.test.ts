import { describe, expect, it } from "vitest";
import { OpsHistory } from "@/lib/opsHistory";

describe("OpsHistory", () => {
  it("keeps each figure's last values, bounded, gaps left out, figures that appear later aligned", () => {
    const h = new OpsHistory(3);
    h.push(0, { events: 10, p99: null });
    h.push(2000, { events: 20, p99: 4.5 });
    h.push(4000, { events: 30, p99: 5.5, lag: 7 });
    expect(h.values("events")).toEqual([10, 20, 30]);
    expect(h.values("p99")).toEqual([4.5, 5.5]);
    expect(h.values("lag")).toEqual([7]);
    h.push(6000, { events: 40, p99: Number.NaN, lag: 9 });
    expect(h.length).toBe(3);
    expect(h.values("events")).toEqual([20, 30, 40]);
    expect(h.values("p99")).toEqual([4.5, 5.5]);
    expect(h.values("lag")).toEqual([7, 9]);
    expect(h.range("events")).toEqual({ min: 20, max: 40 });
    expect(h.range("nothing")).toBeNull();
    expect(h.spanSeconds).toBe(4);
    // A figure missing from a scrape is a gap, not a zero.
    h.push(8000, { p99: 6 });
    expect(h.values("events")).toEqual([30, 40]);
  });
});
