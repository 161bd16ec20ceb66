// The live connection to ttpulse's WebSocket, without React: connect, subscribe, apply the
// snapshot and the updates to a FeedStore, resnapshot on an account-lane gap, reconnect with
// backoff, watch the socket's liveness, stop when the user's sign-in has expired, and publish an
// immutable view at most once per frame.
// `useLiveFeed` wraps it for React.

import { backoffDelay } from "./backoff";
import { createFrameConflator, type Caf, type FrameConflator, type Raf } from "./conflate";
import { FeedStore, type FeedData } from "./feedStore";
import { listen } from "./listen";
import type {
  Candle,
  FillReport,
  PnlPoint,
  RecoveredLane,
  ServerMessage,
  Snapshot,
  TradePrint,
  UpdateMessage,
} from "./types";

/** An update's delay split by hop (ms). */
export interface HopsMs {
  processed: number;
  cached: number;
  delivered: number;
}

/**
 * `refused`: the server answered the subscribe with an error (e.g. `forbidden`); see `lastError`.
 * `signed-out`: the user's token expired (close 4001) or is refused: no more reconnects.
 */
export type ConnState = "connecting" | "live" | "stale" | "disconnected" | "refused" | "signed-out";

export interface FeedView {
  data: FeedData;
  conn: ConnState;
  /** End-to-end delay of the newest update (now − ingest_ts), ms; null when unknown. */
  delayMs: number | null;
  /**
   * Where that delay went, from the update's hop times (ms): ingest → processed, processed →
   * cached, cached → here (the last includes the socket); null when the update had none.
   */
  hopsMs: HopsMs | null;
  /**
   * The clock the view was published at (ms), on the server's clock as far as the pongs tell
   * (exchange times and ingest times are server-side): stale marks are computed against it.
   */
  nowMs: number;
  /** How far the server's clock is ahead of this browser's (ms), from the last pong. */
  clockOffsetMs: number;
  /** While disconnected: when the next connection attempt starts (ms). */
  retryAt: number | null;
  /** Connections in a row that did not stay up for `stableAfterMs` (they set the backoff). */
  attempt: number;
  /** Connections opened so far. */
  connections: number;
  /** Snapshots requested after an account-lane gap. */
  resnapshots: number;
  /** The last error the server sent, or the last close reason. */
  lastError: string | null;
  /**
   * A change of subscription the server refused while the feed was live (e.g. a watchlist
   * symbol it does not know): the earlier subscription goes on; cleared by the next snapshot.
   */
  refusal: string | null;
}

/** The subset of the browser WebSocket that the feed uses (a fake can stand in for tests). */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason?: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** The subprotocol the feed offers: wire version 2, the updates of a server wake in one frame. */
export const BATCH_PROTOCOL = "ttpulse.v2";

export type SocketFactory = (url: string, protocols: string[]) => SocketLike;

export interface LiveFeedOptions {
  /** ws:// or wss:// URL; by default the page's own origin + /ws. */
  url?: string | null;
  initial?: Snapshot | null;
  /** The clock of the first (server-rendered) view, so that hydration matches. */
  initialNowMs?: number;
  /** Instruments to follow (states and candles); `["*"]` (all) by default. See `setInstruments`. */
  instruments?: string[];
  /** Accounts to follow (positions, fills, P&L); `["*"]` (all the user may see) by default. */
  positions?: string[];
  /** Instruments whose prints (time and sales) to follow; none by default. See `setTrades`. */
  trades?: string[];
  socketFactory?: SocketFactory;
  raf?: Raf;
  caf?: Caf;
  now?: () => number;
  random?: () => number;
  /** Socket quiet this long while live → "stale". */
  staleAfterMs?: number;
  /** Socket quiet this long → drop it and reconnect. */
  deadAfterMs?: number;
  /** How often the client sends {"op":"ping"} (the server answers "pong"). */
  pingEveryMs?: number;
  /** How long to wait for the snapshot asked for after a gap before reconnecting. */
  snapshotTimeoutMs?: number;
  /** How long a connection attempt may take to open before it is dropped and retried. */
  connectTimeoutMs?: number;
  /** Housekeeping tick: liveness, ping, the clock of stale marks. */
  tickMs?: number;
  /**
   * Publish the view at most this often (ms), on an animation frame: the screen's refresh
   * rate for data, whatever the update rate (0: every frame).
   */
  publishEveryMs?: number;
  /**
   * Ask the server for at most this many updates per second per market key (`max_rate`: it
   * resamples, the newest state within 1/rate; prints and fills are never held). Unset: every
   * update.
   */
  maxRate?: number;
  /**
   * A connection live this long resets the reconnect backoff. A snapshot alone does not: a
   * server that closes every session soon after its snapshot (4008/4009 under load) is not
   * hammered with reconnects.
   */
  stableAfterMs?: number;
  /**
   * The fill lanes to resume and the last seq held of each, sent as the subscribe's `recover`
   * (the server answers the fills in between in a `recovered` message after the snapshot).
   */
  recover?: () => Record<string, number>;
  /**
   * Called once when the feed stops for good because the user's sign-in ended: the server
   * closed the session with 4001 (token expired), or `checkSignedIn` said the credential is
   * refused. The page reloads there (lib/signIn.ts), so that the sign-in proxy renews the token
   * or the server render shows the sign-in page.
   */
  onSignedOut?: () => void;
  /**
   * For a signed-in page: after a connection that never opened (a refused upgrade looks like
   * any failure to a browser), asks whether the credential is still accepted (false: refused).
   * Without it, such a failure is retried with the backoff like an outage.
   */
  checkSignedIn?: () => Promise<boolean>;
}

const CONNECTING = 0;
const OPEN = 1;
/** Close codes that mean "you were too slow": reconnect (with the backoff) and resnapshot. */
export const CLOSE_ACCOUNT_OVERFLOW = 4008;
export const CLOSE_TOO_SLOW = 4009;
/** The server's close when the session's token expired: reconnecting with it would be refused. */
export const CLOSE_TOKEN_EXPIRED = 4001;

/** The most a server's clock may be off this browser's and still be believed (a day). */
const MAX_CLOCK_OFFSET_MS = 86_400_000;

/** Error codes that refuse a subscribe for good (until something changes on the user's side). */
const REFUSALS = new Set(["forbidden", "bad_subscription", "bad_request"]);

export function defaultWsUrl(): string {
  if (typeof location === "undefined") return "ws://127.0.0.1:8080/ws";
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
}

export class LiveFeed {
  readonly store: FeedStore;
  private readonly opts: Required<
    Pick<
      LiveFeedOptions,
      "staleAfterMs" | "deadAfterMs" | "pingEveryMs" | "snapshotTimeoutMs" | "connectTimeoutMs" | "tickMs" | "stableAfterMs"
    >
  > &
    LiveFeedOptions;
  private readonly now: () => number;
  private readonly conflator: FrameConflator;
  private readonly listeners = new Set<() => void>();
  private readonly candleListeners = new Set<(c: Candle) => void>();
  private readonly resyncListeners = new Set<(snapshot: Snapshot) => void>();
  private readonly fillListeners = new Set<(fill: FillReport) => void>();
  private readonly recoveredListeners = new Set<(lanes: RecoveredLane[]) => void>();
  private readonly tradeListeners = new Set<(print: TradePrint) => void>();
  private readonly pnlListeners = new Set<(point: PnlPoint) => void>();
  private instruments: string[];
  private trades: string[];
  private readonly serverView: FeedView;
  private view: FeedView;

  private socket: SocketLike | null = null;
  private generation = 0;
  private running = false;
  private conn: ConnState = "connecting";
  private delayMs: number | null = null;
  private hopsMs: HopsMs | null = null;
  private attempt = 0;
  private connections = 0;
  private resnapshots = 0;
  private lastError: string | null = null;
  private refusal: string | null = null;
  private retryAt: number | null = null;
  private lastHeard = 0;
  private lastPing = 0;
  /** When the current connection got its first snapshot (ms), or null. */
  private liveSince: number | null = null;
  private clockOffsetMs = 0;
  /** Whether the current connection attempt opened (a refused upgrade never does). */
  private opened = false;
  /** A `checkSignedIn` in flight: one at a time. */
  private checkingSignIn = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private snapshotTimer: ReturnType<typeof setTimeout> | null = null;
  private subscribeRetry: ReturnType<typeof setTimeout> | null = null;
  private tickTimer: ReturnType<typeof setInterval> | null = null;

  /** Publishes (listener notifications) so far: one per frame at most. */
  publishes = 0;

  constructor(options: LiveFeedOptions = {}) {
    this.opts = {
      staleAfterMs: 6000,
      deadAfterMs: 15000,
      pingEveryMs: 4000,
      snapshotTimeoutMs: 5000,
      connectTimeoutMs: 5000,
      tickMs: 1000,
      stableAfterMs: 10000,
      ...options,
    };
    this.now = options.now ?? Date.now;
    this.instruments = options.instruments ? symbolSet(options.instruments) : ["*"];
    this.trades = options.trades ?? [];
    this.store = new FeedStore(options.initial ?? null);
    this.conflator = createFrameConflator(() => this.publish(), options.raf, options.caf, options.publishEveryMs ?? 0, this.now);
    this.serverView = this.buildView(options.initialNowMs ?? this.now());
    this.view = this.serverView;
  }

  // --- React's useSyncExternalStore contract -------------------------------------------------

  subscribe = (listener: () => void): (() => void) => listen(this.listeners, listener);

  getView = (): FeedView => this.view;

  getServerView = (): FeedView => this.serverView;

  /** Called for every candle update applied, before any conflation (charts update imperatively). */
  onCandle(listener: (c: Candle) => void): () => void {
    return listen(this.candleListeners, listener);
  }

  /**
   * Called after every snapshot is applied (the first one of each connection, one asked for
   * after a gap, one the server sent unasked): whatever was missed while it was not live, a
   * history view should read again.
   */
  onResync(listener: (snapshot: Snapshot) => void): () => void {
    return listen(this.resyncListeners, listener);
  }

  /** Called for every fill the stream applies, in lane order (the blotter keeps them). */
  onFill(listener: (fill: FillReport) => void): () => void {
    return listen(this.fillListeners, listener);
  }

  /** Called for every print of the instruments `setTrades` follows, in order. */
  onTrade(listener: (print: TradePrint) => void): () => void {
    return listen(this.tradeListeners, listener);
  }

  /** Called for every P&L sample of the accounts followed (each second, 1 s and 1 min keys). */
  onPnl(listener: (point: PnlPoint) => void): () => void {
    return listen(this.pnlListeners, listener);
  }

  /**
   * Follows these instruments from now on (what is on screen) instead of the ones before:
   * unsubscribes the ones dropped and subscribes the whole set again, whose snapshot then
   * replaces the state (so the store holds exactly what is followed).
   */
  setInstruments(symbols: string[]): void {
    this.follow("instruments", symbols);
  }

  /** Follows the prints of these instruments (time and sales) instead of the ones before. */
  setTrades(symbols: string[]): void {
    this.follow("trades", symbols);
  }

  /** Called with the server's answer to a subscribe's `recover`, after its snapshot. */
  onRecovered(listener: (lanes: RecoveredLane[]) => void): () => void {
    return listen(this.recoveredListeners, listener);
  }

  // --- lifecycle ------------------------------------------------------------------------------

  start(): void {
    if (this.running) return;
    this.running = true;
    this.tickTimer = setInterval(() => this.tick(), this.opts.tickMs);
    this.connect();
  }

  stop(): void {
    this.running = false;
    this.generation += 1;
    for (const t of [this.reconnectTimer, this.snapshotTimer, this.subscribeRetry]) if (t) clearTimeout(t);
    this.reconnectTimer = this.snapshotTimer = this.subscribeRetry = null;
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.tickTimer = null;
    this.conflator.cancel();
    this.closeSocket(1000, "page closed");
  }

  /** After a refusal: subscribes again (e.g. once the user signed in again). */
  retry(): void {
    if (this.conn !== "refused") return;
    this.conn = "connecting";
    this.lastError = null;
    if (!this.sendSubscribe()) this.dropSocket("retry");
    this.conflator.schedule();
  }

  /**
   * A new set for one list: unsubscribes what it dropped, then sends the whole subscription
   * again (the next connection subscribes to the new set anyway).
   */
  private follow(list: "instruments" | "trades", symbols: string[]): void {
    const next = symbolSet(symbols);
    const current = this[list];
    if (sameList(next, current)) return;
    this[list] = next;
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) return;
    const dropped = current.filter((s) => !next.includes(s));
    if (dropped.length > 0) socket.send(JSON.stringify({ op: "unsubscribe", instruments: [], positions: [], [list]: dropped }));
    if (this.conn !== "refused") this.sendSubscribe();
  }

  /** Asks for a fresh snapshot on the open socket (subscribing again answers with one). */
  requestResnapshot(reason: string): void {
    this.resnapshots += 1;
    this.lastError = reason;
    if (this.conn === "live") this.conn = "stale";
    if (!this.sendSubscribe()) return;
    if (this.snapshotTimer) clearTimeout(this.snapshotTimer);
    this.snapshotTimer = setTimeout(() => {
      this.snapshotTimer = null;
      this.dropSocket("no snapshot after a resnapshot request");
    }, this.opts.snapshotTimeoutMs);
    this.conflator.schedule();
  }

  // --- internals ------------------------------------------------------------------------------

  private connect(): void {
    if (!this.running) return;
    this.reconnectTimer = null;
    this.retryAt = null;
    const generation = ++this.generation;
    const url = this.opts.url || defaultWsUrl();
    this.opened = false;
    let socket: SocketLike;
    try {
      socket = this.opts.socketFactory
        ? this.opts.socketFactory(url, [BATCH_PROTOCOL])
        : (new WebSocket(url, [BATCH_PROTOCOL]) as unknown as SocketLike);
    } catch (e) {
      this.lastError = e instanceof Error ? e.message : String(e);
      this.closed(generation, 1006);
      return;
    }
    this.socket = socket;
    this.lastHeard = this.now();
    socket.onopen = () => {
      if (generation !== this.generation) return;
      this.opened = true;
      this.connections += 1;
      this.lastHeard = this.lastPing = this.now();
      this.conn = "connecting";
      this.sendSubscribe();
      this.conflator.schedule();
    };
    socket.onmessage = (ev) => {
      if (generation !== this.generation) return;
      this.onMessage(ev.data);
    };
    socket.onclose = (ev) => this.closed(generation, ev.code, ev.reason);
    socket.onerror = () => {
      /* a close event follows */
    };
  }

  private sendSubscribe(): boolean {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) return false;
    const recover = this.opts.recover?.() ?? {};
    socket.send(
      JSON.stringify({
        op: "subscribe",
        instruments: this.instruments,
        positions: this.opts.positions ?? ["*"],
        ...(this.trades.length > 0 ? { trades: this.trades } : {}),
        ...(Object.keys(recover).length > 0 ? { recover } : {}),
        ...(this.opts.maxRate ? { max_rate: Math.max(1, Math.round(this.opts.maxRate)) } : {}),
      }),
    );
    return true;
  }

  private applyUpdate(msg: UpdateMessage): void {
    const result = this.store.applyUpdate(msg);
    if (result === "gap") {
      this.requestResnapshot(`gap on ${msg.key}: got seq ${msg.seq}`);
    } else if (result === "applied" && msg.kind === "candle") {
      for (const listener of this.candleListeners) listener(msg.data);
    } else if (result === "applied" && msg.kind === "fill") {
      for (const listener of this.fillListeners) listener(msg.data);
    } else if (msg.kind === "trade") {
      for (const listener of this.tradeListeners) listener(msg.data);
    } else if (msg.kind === "pnl") {
      for (const listener of this.pnlListeners) listener(msg.data);
    }
    if (msg.ingest_ts > 0) {
      const now = this.serverNow();
      this.delayMs = Math.max(0, now - msg.ingest_ts / 1000);
      const h = msg.hops;
      this.hopsMs =
        h && h.processed > 0 && h.cached > 0
          ? {
              processed: Math.max(0, (h.processed - msg.ingest_ts) / 1000),
              cached: Math.max(0, (h.cached - h.processed) / 1000),
              delivered: Math.max(0, now - h.cached / 1000),
            }
          : null;
    }
    if (this.conn === "stale" && !this.store.awaitingSnapshot) this.conn = "live";
  }

  private onMessage(raw: unknown): void {
    this.lastHeard = this.now();
    if (typeof raw !== "string") return;
    let msg: ServerMessage;
    try {
      msg = JSON.parse(raw) as ServerMessage;
    } catch {
      return;
    }
    switch (msg.type) {
      case "snapshot":
        this.store.applySnapshot(msg);
        if (this.snapshotTimer) clearTimeout(this.snapshotTimer);
        this.snapshotTimer = null;
        this.liveSince ??= this.now();
        this.conn = "live";
        this.lastError = null;
        this.refusal = null;
        for (const listener of this.resyncListeners) listener(msg);
        break;
      case "recovered":
        for (const listener of this.recoveredListeners) listener(msg.lanes ?? []);
        break;
      case "update":
        this.applyUpdate(msg);
        break;
      case "batch":
        // Wire version 2: the same updates as version 1 would send one by one, in order.
        for (const update of Array.isArray(msg.updates) ? msg.updates : []) {
          // A malformed element is skipped; the rest of the batch still applies.
          if (update && typeof update === "object") this.applyUpdate(update);
        }
        break;
      case "error":
        this.lastError = `${msg.code}: ${msg.message}`;
        if (REFUSALS.has(msg.code) && this.conn === "connecting") {
          // Subscribing again would be refused again: say so, and wait for the user.
          this.conn = "refused";
        } else if (REFUSALS.has(msg.code)) {
          // A change refused while live: the data goes on; the screen says what was refused.
          this.refusal = this.lastError;
        }
        if (msg.code === "not_ready" || msg.code === "unavailable") {
          if (this.subscribeRetry) clearTimeout(this.subscribeRetry);
          this.subscribeRetry = setTimeout(() => {
            this.subscribeRetry = null;
            this.sendSubscribe();
          }, 250);
        }
        break;
      case "pong":
        if (typeof msg.server_ts === "number" && Number.isFinite(msg.server_ts)) {
          // The server's time at the pong, against the middle of the ping's round trip. An
          // offset of more than a day is no clock skew but a broken value (milliseconds sent
          // for microseconds, garbage): it is ignored rather than moving every stale mark.
          const now = this.now();
          const sent = this.lastPing > 0 && now - this.lastPing < 2000 ? this.lastPing : now;
          const offset = Math.round(msg.server_ts / 1000 - (sent + now) / 2);
          if (Math.abs(offset) <= MAX_CLOCK_OFFSET_MS) this.clockOffsetMs = offset;
        }
        if (this.conn !== "stale" || this.store.awaitingSnapshot) return;
        this.conn = "live";
        break;
      default:
        // Any type this client does not know: liveness only.
        if (this.conn !== "stale" || this.store.awaitingSnapshot) return;
        this.conn = "live";
    }
    this.conflator.schedule();
  }

  private closed(generation: number, code: number, reason?: string): void {
    if (generation !== this.generation || !this.running) return;
    if (this.socket) detach(this.socket);
    this.socket = null;
    if (this.snapshotTimer) clearTimeout(this.snapshotTimer);
    this.snapshotTimer = null;
    this.conn = "disconnected";
    this.delayMs = null;
    this.hopsMs = null;
    if (this.liveSince != null && this.now() - this.liveSince >= this.opts.stableAfterMs) this.attempt = 0;
    this.liveSince = null;
    if (reason) this.lastError = `closed ${code}: ${reason}`;
    else if (code !== 1000 && code !== 1005) this.lastError = `closed ${code}`;
    if (code === CLOSE_TOKEN_EXPIRED) {
      this.signOut();
      return;
    }
    if (!this.opened) this.checkSignIn();
    // 4008/4009 (too slow) take the backoff like any close: the first one after a stable
    // connection reconnects at once, repeated ones wait longer and longer.
    const delay = backoffDelay(this.attempt, { random: this.opts.random });
    this.attempt += 1;
    this.retryAt = this.now() + delay;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
    this.conflator.schedule();
  }

  /** The user's sign-in ended: no reconnect (it would be refused), and the page is told once. */
  private signOut(): void {
    if (this.conn === "signed-out") return;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.retryAt = null;
    this.closeSocket(1000, "signed out");
    this.conn = "signed-out";
    this.conflator.schedule();
    this.opts.onSignedOut?.();
  }

  /** After a connection that never opened: is the credential refused? Then sign out. */
  private checkSignIn(): void {
    const check = this.opts.checkSignedIn;
    if (!check || this.checkingSignIn) return;
    this.checkingSignIn = true;
    check()
      .then((accepted) => {
        // A reconnect that opened meanwhile proves the sign-in good, whatever this says.
        if (!accepted && this.running && !this.opened) this.signOut();
      })
      .catch(() => {
        /* unknown (e.g. the server is down): keep retrying */
      })
      .finally(() => {
        this.checkingSignIn = false;
      });
  }

  /** Gives up on the current socket (silent or stuck) and reconnects. */
  private dropSocket(reason: string): void {
    if (!this.socket) return;
    const generation = this.generation;
    this.closeSocket(4000, reason.slice(0, 100));
    this.closed(generation, 4000, reason);
  }

  /** Closes the current socket, if any, after detaching its handlers (no close event follows). */
  private closeSocket(code: number, reason: string): void {
    const socket = this.socket;
    this.socket = null;
    if (!socket) return;
    detach(socket);
    try {
      socket.close(code, reason);
    } catch {
      /* already closed */
    }
  }

  private tick(): void {
    const now = this.now();
    const socket = this.socket;
    if (socket && socket.readyState === CONNECTING && now - this.lastHeard > this.opts.connectTimeoutMs) {
      // A handshake that neither opens nor fails (e.g. a proxy that holds it) is retried.
      this.dropSocket("the connection did not open in time");
      return;
    }
    if (socket && socket.readyState === OPEN) {
      const quiet = now - this.lastHeard;
      if (quiet > this.opts.deadAfterMs) {
        this.dropSocket(`no message for ${Math.round(quiet / 1000)} s`);
        return;
      }
      if (this.conn === "live" && quiet > this.opts.staleAfterMs) this.conn = "stale";
      if (this.liveSince != null && now - this.liveSince >= this.opts.stableAfterMs) this.attempt = 0;
      if (now - this.lastPing >= this.opts.pingEveryMs) {
        this.lastPing = now;
        socket.send('{"op":"ping"}');
      }
    }
    // Publish every tick: the clock moves the stale marks even when nothing arrives.
    this.conflator.schedule();
  }

  /** This browser's clock moved to the server's. */
  private serverNow(): number {
    return this.now() + this.clockOffsetMs;
  }

  private buildView(nowMs: number): FeedView {
    return {
      data: this.store.view(),
      conn: this.conn,
      delayMs: this.delayMs,
      hopsMs: this.hopsMs,
      nowMs,
      clockOffsetMs: this.clockOffsetMs,
      retryAt: this.retryAt,
      attempt: this.attempt,
      connections: this.connections,
      resnapshots: this.resnapshots,
      lastError: this.lastError,
      refusal: this.refusal,
    };
  }

  private publish(): void {
    this.view = this.buildView(this.serverNow());
    this.publishes += 1;
    for (const listener of this.listeners) listener();
  }
}

function detach(socket: SocketLike): void {
  socket.onopen = null;
  socket.onmessage = null;
  socket.onclose = null;
  socket.onerror = null;
}

/** A list of symbols as the feed keeps it: once each, sorted. */
function symbolSet(symbols: string[]): string[] {
  return [...new Set(symbols)].sort();
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
