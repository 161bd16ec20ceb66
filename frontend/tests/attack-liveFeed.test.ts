import { describe, expect, it, vi } from "vitest";
import { isInstrumentStale } from "@/lib/feedStore";
import { fakeSocketsAndTimersPerTest, goLive, inst, makeFeed, snapshot } from "./helpers";

fakeSocketsAndTimersPerTest();

describe("attack: refusals of a resubscribe while live", () => {
  it("a watchlist change the server refuses (bad_subscription) is reported, not swallowed", () => {
    const { feed, frames } = makeFeed({ instruments: ["ESZ6", "NQZ6"] });
    const ws = goLive(feed, frames);
    feed.setInstruments(["ESZ6", "NQZ6", "GONE7"]); // an instrument the server no longer lists
    ws.receive({ type: "error", code: "bad_subscription", message: "unknown instrument `GONE7`" });
    frames.frame();
    // Expected: the refusal reaches the screen; the earlier subscription's data goes on.
    expect(feed.getView().refusal).toBe("bad_subscription: unknown instrument `GONE7`");
    expect(feed.getView().conn).toBe("live");
    ws.receive({ type: "snapshot", v: 1, ...snapshot() });
    frames.frame();
    expect(feed.getView().refusal).toBeNull();
    feed.stop();
  });
});

describe("attack: pong server_ts the protocol cannot mean", () => {
  it("ignores a server_ts beyond the protocol's time range (year 3000) instead of moving the page's clock there", () => {
    const { feed, frames } = makeFeed({ pingEveryMs: 1000 });
    const ws = goLive(feed, frames);
    vi.advanceTimersByTime(1000);
    ws.receive({ type: "pong", server_ts: 1e20 }); // year ~3.1 million, in µs
    frames.frame();
    // Expected: the clock offset stays what it was (0), so stale marks and the delay stay meaningful.
    expect(feed.getView().clockOffsetMs).toBe(0);
    feed.stop();
  });

  it("a server_ts in milliseconds by mistake does not switch every stale mark off", () => {
    const { feed, frames } = makeFeed({ pingEveryMs: 1000 });
    const ws = goLive(feed, frames);
    vi.advanceTimersByTime(1000);
    ws.receive({ type: "pong", server_ts: Date.now() }); // ms, not µs: 1970 + 20 days
    frames.frame();
    const frozen = inst("ESZ6", 5, { updated_at: (Date.now() - 60_000) * 1000 }); // quiet for a minute
    // Expected: an instrument quiet for a minute is still marked stale.
    expect(isInstrumentStale(frozen, feed.getView().nowMs, 5000)).toBe(true);
    feed.stop();
  });
});

describe("attack: chart clicks and the sparklines", () => {
  it("changing the charted instrument (setTrades resubscribes, the server answers a snapshot) leaves the sparklines alone", () => {
    const { feed, frames } = makeFeed();
    const ws = goLive(feed, frames);
    const before = feed.getView().data.sparks.NQZ6;
    for (const symbol of ["ESZ6", "NQZ6", "ESZ6", "NQZ6"]) {
      feed.setTrades([symbol]);
      ws.receive({ type: "snapshot", v: 1, ...snapshot() }); // nothing moved meanwhile
    }
    frames.frame();
    // Expected: no price moved, so no sparkline point was added.
    expect(feed.getView().data.sparks.NQZ6).toEqual(before);
    feed.stop();
  });
});
