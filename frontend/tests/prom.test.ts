import { describe, expect, it } from "vitest";
import { bucketDelta, byLabel, histogram, parseProm, quantile, sumOf } from "@/lib/prom";

const TEXT = `# HELP ttpulse_ws_connections Open WebSocket sessions
# TYPE ttpulse_ws_connections gauge
ttpulse_ws_connections 3
ttpulse_events_processed_total{type="fill"} 46
ttpulse_events_processed_total{type="quote"} 928
ttpulse_updates_conflated_total{lane="market"} 7
ttpulse_end_to_end_latency_seconds_bucket{le="0.001"} 50
ttpulse_end_to_end_latency_seconds_bucket{le="0.0025"} 90
ttpulse_end_to_end_latency_seconds_bucket{le="0.005"} 100
ttpulse_end_to_end_latency_seconds_bucket{le="+Inf"} 100
ttpulse_end_to_end_latency_seconds_sum 0.15
ttpulse_end_to_end_latency_seconds_count 100
`;

describe("Prometheus text", () => {
  const samples = parseProm(TEXT);

  it("parses samples and labels", () => {
    expect(sumOf(samples, "ttpulse_ws_connections")).toBe(3);
    expect(sumOf(samples, "ttpulse_events_processed_total")).toBe(974);
    expect(sumOf(samples, "ttpulse_events_processed_total", { type: "fill" })).toBe(46);
    expect(sumOf(samples, "missing")).toBeNull();
    expect(byLabel(samples, "ttpulse_updates_conflated_total", "lane")).toEqual({ market: 7 });
  });

  it("estimates quantiles from buckets like histogram_quantile", () => {
    const h = histogram(samples, "ttpulse_end_to_end_latency_seconds");
    expect(h.map((b) => b.le)).toEqual([0.001, 0.0025, 0.005, Infinity]);
    expect(quantile(0.5, h)).toBeCloseTo(0.001, 9);
    expect(quantile(0.25, h)).toBeCloseTo(0.0005, 9);
    expect(quantile(0.7, h)).toBeCloseTo(0.001 + 0.0015 * (20 / 40), 9);
    expect(quantile(0.99, h)).toBeCloseTo(0.0025 + 0.0025 * 0.9, 9);
    expect(quantile(0.5, [])).toBeNull();
    expect(quantile(0.5, [{ le: 1, count: 0 }, { le: Infinity, count: 0 }])).toBeNull();
    expect(quantile(0.99, [{ le: 1, count: 1 }, { le: Infinity, count: 10 }])).toBe(1);
  });

  it("windows buckets between two scrapes", () => {
    const before = [{ le: 0.001, count: 40 }, { le: Infinity, count: 50 }];
    const now = [{ le: 0.001, count: 50 }, { le: Infinity, count: 100 }];
    expect(bucketDelta(now, before)).toEqual([{ le: 0.001, count: 10 }, { le: Infinity, count: 50 }]);
    expect(bucketDelta(now, null)).toBe(now);
  });
});

describe("labelled histograms", () => {
  it("reads one label's buckets (ttpulse_hop_latency_seconds per hop)", () => {
    const samples = parseProm(`ttpulse_hop_latency_seconds_bucket{hop="a",le="0.001"} 5
ttpulse_hop_latency_seconds_bucket{hop="a",le="+Inf"} 10
ttpulse_hop_latency_seconds_bucket{hop="b",le="0.001"} 1
ttpulse_hop_latency_seconds_bucket{hop="b",le="+Inf"} 1
`);
    expect(histogram(samples, "ttpulse_hop_latency_seconds", { hop: "a" }).map((b) => b.count)).toEqual([5, 10]);
    expect(histogram(samples, "ttpulse_hop_latency_seconds", { hop: "b" }).map((b) => b.count)).toEqual([1, 1]);
    expect(histogram(samples, "ttpulse_hop_latency_seconds").map((b) => b.count)).toEqual([6, 11]);
  });
});
