import { afterEach, beforeEach, vi } from "vitest";
import { LiveFeed } from "@/lib/liveFeed";
import type { FillReport, InstrumentState, PositionState, Snapshot, UpdateMessage } from "@/lib/types";

export function inst(symbol: string, seq: number, over: Partial<InstrumentState> = {}): InstrumentState {
  return {
    symbol,
    seq,
    bid: "100.00",
    ask: "100.25",
    mid: "100.125",
    spread: "0.25",
    last: "100.00",
    open: "99.00",
    high: "101.00",
    low: "98.00",
    change: "1.00",
    change_pct: "1.0101",
    volume: 10,
    vwap: "100.1",
    trades: 3,
    updated_at: 1_795_617_000_000_000,
    ...over,
  };
}

export function pos(account: string, symbol: string, seq: number, over: Partial<PositionState> = {}): PositionState {
  return {
    account,
    symbol,
    seq,
    net_qty: 1,
    avg_price: "100",
    realized_pnl: "0",
    unrealized_pnl: "0",
    updated_at: 1_795_617_000_000_000,
    ...over,
  };
}

export function snapshot(over: Partial<Snapshot> = {}): Snapshot {
  return {
    instruments: [inst("ESZ6", 5), inst("NQZ6", 3)],
    candles: [],
    positions: [pos("ACC1", "ESZ6", 2)],
    accounts: [{ account: "ACC1", symbol: "ESZ6", fill_seq: 4 }],
    ...over,
  };
}

export function instUpdate(s: InstrumentState, ingest_ts = 0): UpdateMessage {
  return { type: "update", v: 1, kind: "instrument", key: `inst:${s.symbol}`, seq: s.seq, ingest_ts, data: s };
}

/** A fill on the lane fills:<account>:<symbol> (the server's key since fill lanes are per instrument). */
export function fillUpdate(account: string, seq: number, position?: PositionState, symbol = "ESZ6"): UpdateMessage {
  const data: FillReport = {
    account,
    seq,
    fill_id: `F-${seq}`,
    order_id: `o-${seq}`,
    symbol,
    side: "buy",
    price: "100.25",
    qty: 1,
    ts: 1_795_617_000_000_000,
    position: position ?? pos(account, symbol, 100 + seq),
  };
  return { type: "update", v: 1, kind: "fill", key: `fills:${account}:${symbol}`, seq, ingest_ts: 1, data };
}

/** A fake WebSocket: records what the client sends, lets the test play the server. */
export class FakeSocket {
  static instances: FakeSocket[] = [];
  readyState = 0;
  sent: string[] = [];
  closedWith: number | undefined;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason?: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  constructor(
    public url: string,
    public protocols: string[] = [],
  ) {
    FakeSocket.instances.push(this);
  }

  static factory = (url: string, protocols: string[] = []) => new FakeSocket(url, protocols);

  static reset() {
    FakeSocket.instances = [];
  }

  static last(): FakeSocket {
    return FakeSocket.instances[FakeSocket.instances.length - 1];
  }

  send(data: string) {
    this.sent.push(data);
  }

  close(code?: number) {
    this.closedWith = code;
    this.readyState = 3;
  }

  // --- server side ---
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(msg: unknown) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }

  serverClose(code: number, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  subscribes(): number {
    return this.sent.filter((s) => JSON.parse(s).op === "subscribe").length;
  }
}

/** For every test of the calling file: a fresh FakeSocket list and fake timers, real timers after. */
export function fakeSocketsAndTimersPerTest() {
  beforeEach(() => {
    FakeSocket.reset();
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });
}

/** A manual requestAnimationFrame: frames run only when the test says so. */
export function fakeRaf() {
  let next = 1;
  const queue = new Map<number, (t: number) => void>();
  return {
    raf: (cb: (t: number) => void) => {
      const id = next++;
      queue.set(id, cb);
      return id;
    },
    caf: (id: number) => {
      queue.delete(id);
    },
    /** Runs the callbacks queued so far (one frame). */
    frame() {
      const callbacks = [...queue.values()];
      queue.clear();
      for (const cb of callbacks) cb(0);
      return callbacks.length;
    },
    get queued() {
      return queue.size;
    },
  };
}

/** A LiveFeed on a FakeSocket and a manual requestAnimationFrame, jitter fixed at 0.5. */
export function makeFeed(over: Partial<ConstructorParameters<typeof LiveFeed>[0]> = {}) {
  const frames = fakeRaf();
  const feed = new LiveFeed({
    url: "ws://test/ws",
    initial: snapshot(),
    socketFactory: FakeSocket.factory,
    raf: frames.raf,
    caf: frames.caf,
    random: () => 0.5,
    ...over,
  });
  return { feed, frames };
}

/** The server side accepts the socket a feed opened last. */
export function openLastSocket(): FakeSocket {
  const ws = FakeSocket.last();
  ws.open();
  return ws;
}

/** A started makeFeed whose socket the server has accepted (no snapshot yet). */
export function makeOpenFeed(over: Partial<ConstructorParameters<typeof LiveFeed>[0]> = {}) {
  const { feed, frames } = makeFeed(over);
  feed.start();
  return { feed, frames, ws: openLastSocket() };
}

/** Starts a feed, opens its socket and serves the snapshot. */
export function goLive(feed: LiveFeed, frames: ReturnType<typeof fakeRaf>) {
  feed.start();
  const ws = openLastSocket();
  ws.receive({ type: "snapshot", v: 1, ...snapshot() });
  frames.frame();
  return ws;
}
