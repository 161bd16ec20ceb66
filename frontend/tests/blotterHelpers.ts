// A BlotterFeed on a LiveFeed over a FakeSocket, and a fake GET /api/fills.

import { BlotterFeed } from "@/lib/blotterFeed";
import type { BlotterFill } from "@/lib/blotter";
import { LiveFeed } from "@/lib/liveFeed";
import { FakeSocket, fakeRaf, openLastSocket, snapshot } from "./helpers";

export const T0 = 1_795_617_000_000_000;

/** A stored fill of `account` (lane `<account>:<symbol>`), as GET /api/fills gives it. */
export function stored(account: string, seq: number, symbol = "ESZ6"): BlotterFill {
  return { account, symbol, seq, fill_id: `F-${seq}`, order_id: `o-${seq}`, side: "buy", price: "100.25", qty: 1, ts: T0 };
}

/** What the page was rendered with: ACC1's fills `seqs` (newest first), its ESZ6 lane at the newest. */
export function heldFills(seqs: number[]): ConstructorParameters<typeof BlotterFeed>[0] {
  return { pages: { ACC1: { fills: seqs.map((s) => stored("ACC1", s)), next: null } }, lanes: { "fills:ACC1:ESZ6": seqs[0] } };
}

/** The snapshot's account lanes: ACC1/ESZ6 at `fill_seq`. */
export const lane = (fill_seq: number) => [{ account: "ACC1", symbol: "ESZ6", fill_seq }];

/** The server's snapshot message with ACC1/ESZ6's fill lane at `fill_seq`. */
export const laneSnapshot = (fill_seq: number) => ({ type: "snapshot", v: 1, ...snapshot({ accounts: lane(fill_seq) }) });

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

/**
 * A started LiveFeed with a BlotterFeed attached; `ws`, its socket, open (no snapshot yet).
 * `stop` ends both (the feed stops, the blotter detaches) at the end of a test.
 */
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
  const stop = () => {
    feed.stop();
    blotter.detach();
  };
  return { blotter, feed, frames, ws: openLastSocket(), stop };
}
