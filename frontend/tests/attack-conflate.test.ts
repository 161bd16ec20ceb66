import { describe, expect, it, vi } from "vitest";
import { createFrameConflator } from "@/lib/conflate";
import { BlotterFeed } from "@/lib/blotterFeed";
import { LiveFeed } from "@/lib/liveFeed";
import { FakeSocket, fakeRaf, fakeSocketsAndTimersPerTest, goLive, inst, instUpdate, makeFeed } from "./helpers";

fakeSocketsAndTimersPerTest();

describe("attack: publish scheduling when the wall clock steps back (NTP, user, VM resume)", () => {
  it("publishes within about one interval after the clock went back 60 s", () => {
    let clock = 1_000_000;
    const frames = fakeRaf();
    let published = 0;
    const c = createFrameConflator(() => (published += 1), frames.raf, frames.caf, 200, () => clock);
    c.schedule();
    frames.frame();
    expect(published).toBe(1);
    clock -= 60_000; // the clock steps back a minute
    c.schedule();
    vi.advanceTimersByTime(250);
    frames.frame();
    // Expected: the next publish waits at most one interval (200 ms), whatever the wall clock did.
    expect(published).toBe(2);
  });

  it("a LiveFeed keeps repainting (the view follows new prices) after the clock went back", () => {
    let clock = 1_795_617_000_000;
    const { feed, frames } = makeFeed({ now: () => clock, publishEveryMs: 200 });
    const ws = goLive(feed, frames);
    clock -= 30_000; // NTP steps the clock back 30 s
    ws.receive(instUpdate(inst("ESZ6", 6, { bid: "101.00" })));
    vi.advanceTimersByTime(1000);
    frames.frame();
    // Expected: the new bid is on screen within a second, not 30 s later.
    expect(feed.getView().data.instruments.find((i) => i.symbol === "ESZ6")?.bid).toBe("101.00");
    feed.stop();
  });

  it("the blotter (no min interval) still publishes on the next frame after the clock went back", async () => {
    const frames = fakeRaf();
    let clock = 1_795_617_000_000;
    vi.setSystemTime(clock);
    const b = new BlotterFeed(null, { fetchJson: async () => ({ fills: [], next: null }), raf: frames.raf, caf: frames.caf });
    const feed = new LiveFeed({ url: "ws://t/ws", socketFactory: FakeSocket.factory, raf: frames.raf, caf: frames.caf });
    b.attach(feed);
    void b.loadMore(); // schedules a publish
    frames.frame();
    await vi.advanceTimersByTimeAsync(0);
    frames.frame();
    const before = b.getView();
    clock -= 60_000;
    vi.setSystemTime(clock);
    b.blotter.addFill({ account: "ACC1", symbol: "ESZ6", seq: 1, fill_id: "F", order_id: "o", side: "buy", price: "1", qty: 1, ts: 1 });
    void b.loadMore();
    frames.frame();
    await vi.advanceTimersByTimeAsync(0);
    frames.frame();
    // Expected: the view is rebuilt on the next frame (the fill shows), not a minute later.
    expect(b.getView()).not.toBe(before);
    expect(b.getView().rows.length).toBe(1);
    b.detach();
  });
});
