// A BlotterFeed on a LiveFeed over a FakeSocket, and a fake GET /api/fills.

import { BlotterFeed } from "@/lib/blotterFeed";
import type { BlotterFill } from "@/lib/blotter";
import { LiveFeed } from "@/lib/liveFeed";
import { FakeSocket, fakeRaf, snapshot } from "./helpers";

export const T0 = 1_795_617_000_000_000;

/** A stored fill of `account` (lane `<account>:<symbol>`), as GET /api/fills gives it. */
export function stored(account: string, seq: number, symbol = "ESZ6"): BlotterFill {
  return { account, symbol, seq, fill_id: `F-${seq}`, order_id: `o-${seq}`, side: "buy", price: "100.25", qty: 1, ts: T0 };
}

/** A fake GET /api/fills: the lane ACC1/ESZ6 holds fills 1..`upTo`. Records every path read. */
export function fakeApi(upTo: () => number, fail = () => false) {
  const paths: string[] = [];
  const fetchJson = async (path: string) => {
    paths.push(path);
    if (fail()) throw new Error("HTTP 503");
    const q = new URL(path, "http://x").searchParams;
    const limit = Number(q.get("limit"));
    if (q.has("since_seq")) {
      const from = Number(q.get("since_seq"));
      const fills = [];
      for (let s = from + 1; s <= upTo() && fills.length < limit; s += 1) fills.push(stored(q.get("account")!, s));
      return { fills, next: null };
    }
    const fills = [];
    for (let s = upTo(); s >= 1 && fills.length < limit; s -= 1) fills.push(stored(q.get("account")!, s));
    return { fills, next: null };
  };
  return { paths, fetchJson };
}

/** A started LiveFeed (its socket not yet open) with a BlotterFeed attached. */
export function setupBlotter(init: ConstructorParameters<typeof BlotterFeed>[0], api: ReturnType<typeof fakeApi>) {
  const frames = fakeRaf();
  const blotter = new BlotterFeed(init, { fetchJson: api.fetchJson, raf: frames.raf, caf: frames.caf, random: () => 0.5 });
  const feed = new LiveFeed({
    url: "ws://test/ws",
    initial: snapshot({ accounts: [] }),
    socketFactory: FakeSocket.factory,
    raf: frames.raf,
    caf: frames.caf,
    random: () => 0.5,
    recover: blotter.recoverFrom,
  });
  blotter.attach(feed);
  feed.start();
  return { blotter, feed, frames };
}
