// The end of a sign-in: the server closes the live feed with 4001 when the token expires, and a
// refused upgrade (after a sleep, say) looks like any failure to a browser; either way the feed
// stops reconnecting (an expired token would be refused forever) and the page reloads, once.
import { describe, expect, it, vi } from "vitest";
import { CLOSE_TOKEN_EXPIRED } from "@/lib/liveFeed";
import { RELOAD_GUARD_MS, RELOAD_KEY, credentialAccepted, reloadForSignIn } from "@/lib/signIn";
import { FakeSocket, fakeSocketsAndTimersPerTest, goLive, makeFeed } from "./helpers";

fakeSocketsAndTimersPerTest();

describe("LiveFeed when the sign-in ends", () => {
  it("4001 (token expired) stops reconnecting, says signed-out and tells the page once", () => {
    const onSignedOut = vi.fn();
    const { feed, frames } = makeFeed({ onSignedOut });
    const ws = goLive(feed, frames);
    ws.serverClose(CLOSE_TOKEN_EXPIRED, "token expired");
    frames.frame();
    const view = feed.getView();
    expect(view.conn).toBe("signed-out");
    expect(view.retryAt).toBeNull();
    expect(view.lastError).toBe("closed 4001: token expired");
    expect(onSignedOut).toHaveBeenCalledTimes(1);
    // No reconnect, however long the page stays open.
    vi.advanceTimersByTime(10 * 60_000);
    expect(FakeSocket.instances).toHaveLength(1);
    expect(onSignedOut).toHaveBeenCalledTimes(1);
    feed.stop();
  });

  it("other closes still reconnect with the backoff", () => {
    const onSignedOut = vi.fn();
    const { feed, frames } = makeFeed({ onSignedOut });
    const ws = goLive(feed, frames);
    ws.serverClose(1011, "restart");
    frames.frame();
    expect(feed.getView().conn).toBe("disconnected");
    vi.advanceTimersByTime(feed.getView().retryAt! - Date.now());
    expect(FakeSocket.instances).toHaveLength(2);
    expect(onSignedOut).not.toHaveBeenCalled();
    feed.stop();
  });

  it("a connection that never opens, with the credential refused (401), signs out", async () => {
    const onSignedOut = vi.fn();
    const checkSignedIn = vi.fn(async () => false);
    const { feed, frames } = makeFeed({ onSignedOut, checkSignedIn });
    feed.start();
    FakeSocket.last().serverClose(1006); // the upgrade got 401: the browser says 1006
    await vi.advanceTimersByTimeAsync(0);
    frames.frame();
    expect(checkSignedIn).toHaveBeenCalledTimes(1);
    expect(feed.getView().conn).toBe("signed-out");
    expect(onSignedOut).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(10 * 60_000);
    expect(FakeSocket.instances).toHaveLength(1);
    feed.stop();
  });

  it("a connection that never opens while the credential is fine (an outage) keeps retrying", async () => {
    const onSignedOut = vi.fn();
    const checkSignedIn = vi.fn(async () => true);
    const { feed, frames } = makeFeed({ onSignedOut, checkSignedIn, random: () => 0 });
    feed.start();
    for (let i = 1; i <= 3; i++) {
      FakeSocket.last().serverClose(1006);
      frames.frame();
      await vi.advanceTimersByTimeAsync(feed.getView().retryAt! - Date.now());
      expect(FakeSocket.instances).toHaveLength(i + 1);
    }
    expect(checkSignedIn).toHaveBeenCalledTimes(3);
    expect(onSignedOut).not.toHaveBeenCalled();
    // The check failing (the API unreachable too) is no verdict either.
    checkSignedIn.mockImplementationOnce(async () => {
      throw new Error("fetch failed");
    });
    FakeSocket.last().serverClose(1006);
    frames.frame();
    await vi.advanceTimersByTimeAsync(feed.getView().retryAt! - Date.now());
    expect(FakeSocket.instances).toHaveLength(5);
    expect(onSignedOut).not.toHaveBeenCalled();
    feed.stop();
  });

  it("a refusal that arrives after a reconnect opened does not sign out", async () => {
    const onSignedOut = vi.fn();
    let answer: (accepted: boolean) => void = () => {};
    const checkSignedIn = vi.fn(() => new Promise<boolean>((resolve) => (answer = resolve)));
    const { feed, frames } = makeFeed({ onSignedOut, checkSignedIn, random: () => 0 });
    feed.start();
    FakeSocket.last().serverClose(1006);
    frames.frame();
    vi.advanceTimersByTime(feed.getView().retryAt! - Date.now());
    FakeSocket.last().open();
    answer(false);
    await vi.advanceTimersByTimeAsync(0);
    frames.frame();
    expect(onSignedOut).not.toHaveBeenCalled();
    expect(feed.getView().conn).not.toBe("signed-out");
    feed.stop();
  });

  it("a connection that opened and then dropped is not a sign-in question", async () => {
    const checkSignedIn = vi.fn(async () => false);
    const { feed, frames } = makeFeed({ checkSignedIn });
    const ws = goLive(feed, frames);
    ws.serverClose(1006);
    await vi.advanceTimersByTimeAsync(0);
    frames.frame();
    expect(checkSignedIn).not.toHaveBeenCalled();
    expect(feed.getView().conn).toBe("disconnected");
    feed.stop();
  });
});

describe("reloadForSignIn", () => {
  const memory = () => {
    const items = new Map<string, string>();
    return { getItem: (k: string) => items.get(k) ?? null, setItem: (k: string, v: string) => void items.set(k, v) };
  };

  it("reloads, but not again within the guard time (a token that expires at once would loop)", () => {
    const storage = memory();
    const reload = vi.fn();
    let t = 1_000_000;
    const now = () => t;
    expect(reloadForSignIn({ storage, reload, now })).toBe(true);
    expect(storage.getItem(RELOAD_KEY)).toBe(String(1_000_000));
    t += RELOAD_GUARD_MS - 1;
    expect(reloadForSignIn({ storage, reload, now })).toBe(false);
    expect(reload).toHaveBeenCalledTimes(1);
    t += 1;
    expect(reloadForSignIn({ storage, reload, now })).toBe(true);
    expect(reload).toHaveBeenCalledTimes(2);
  });

  it("reloads without storage, and a garbled stored time does not block it", () => {
    const reload = vi.fn();
    expect(reloadForSignIn({ storage: null, reload })).toBe(true);
    const storage = memory();
    storage.setItem(RELOAD_KEY, "garbage");
    expect(reloadForSignIn({ storage, reload })).toBe(true);
    expect(reload).toHaveBeenCalledTimes(2);
  });
});

describe("credentialAccepted", () => {
  const answering = (status: number) => vi.fn(async () => new Response(null, { status })) as unknown as typeof fetch;

  it("is false only on 401; a 403 or an outage is no verdict on the sign-in", async () => {
    expect(await credentialAccepted(answering(401))).toBe(false);
    expect(await credentialAccepted(answering(200))).toBe(true);
    expect(await credentialAccepted(answering(403))).toBe(true);
    expect(await credentialAccepted(answering(502))).toBe(true);
  });

  it("asks the same origin's API, with the browser's credentials, uncached", async () => {
    const fetchFn = answering(200);
    await credentialAccepted(fetchFn);
    const [url, init] = (fetchFn as unknown as ReturnType<typeof vi.fn>).mock.calls[0];
    expect(url).toBe("/api/positions");
    expect(init).toMatchObject({ cache: "no-store", credentials: "same-origin" });
  });
});
