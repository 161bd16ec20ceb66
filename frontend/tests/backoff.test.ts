import { describe, expect, it } from "vitest";
import { backoffDelay, BACKOFF_BASE_MS, BACKOFF_CAP_MS } from "@/lib/backoff";
import { createFrameConflator } from "@/lib/conflate";
import { fakeRaf } from "./helpers";

describe("reconnect backoff", () => {
  it("grows exponentially between its jitter bounds", () => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const ceiling = BACKOFF_BASE_MS * 2 ** attempt;
      expect(backoffDelay(attempt, { random: () => 0 })).toBe(ceiling / 2);
      expect(backoffDelay(attempt, { random: () => 0.999999 })).toBeCloseTo(ceiling, -1);
    }
    // the smallest delay of an attempt is never below the largest of two attempts before
    expect(backoffDelay(3, { random: () => 0 })).toBeGreaterThanOrEqual(backoffDelay(1, { random: () => 0.999999 }));
  });

  it("is jittered: different random draws give different delays", () => {
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelay(4)));
    expect(delays.size).toBeGreaterThan(10);
    for (const d of delays) {
      expect(d).toBeGreaterThanOrEqual(2000);
      expect(d).toBeLessThanOrEqual(4000);
    }
  });

  it("caps", () => {
    for (const attempt of [5, 6, 10, 50, 1000]) {
      const d = backoffDelay(attempt);
      expect(d).toBeLessThanOrEqual(BACKOFF_CAP_MS);
      expect(d).toBeGreaterThanOrEqual(BACKOFF_CAP_MS / 2);
    }
    expect(backoffDelay(100, { random: () => 0.999999 })).toBeLessThanOrEqual(BACKOFF_CAP_MS);
    expect(backoffDelay(3, { capMs: 1000, random: () => 0.999999 })).toBeLessThanOrEqual(1000);
  });
});

describe("frame conflation", () => {
  it("publishes once per frame however many schedules", () => {
    const frames = fakeRaf();
    let published = 0;
    const c = createFrameConflator(() => published++, frames.raf, frames.caf);
    for (let i = 0; i < 1000; i++) c.schedule();
    expect(published).toBe(0);
    expect(frames.queued).toBe(1);
    frames.frame();
    expect(published).toBe(1);
    frames.frame();
    expect(published).toBe(1);
    c.schedule();
    c.schedule();
    frames.frame();
    expect(published).toBe(2);
  });

  it("flush publishes a pending frame now; cancel drops it", () => {
    const frames = fakeRaf();
    let published = 0;
    const c = createFrameConflator(() => published++, frames.raf, frames.caf);
    c.schedule();
    c.flush();
    expect(published).toBe(1);
    expect(frames.queued).toBe(0);
    c.schedule();
    c.cancel();
    frames.frame();
    expect(published).toBe(1);
  });
});
