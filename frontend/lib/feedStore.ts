// The live feed's state, as plain data and pure functions: no React, no socket, no timers.
// `useLiveFeed` keeps one of these outside React state and publishes an immutable view of it
// at most once per animation frame.
//
// Ordering rules (docs/protocol.md, "WebSocket protocol"):
// - market lane (instrument, candle, position): each update is the full state of its key;
//   apply it when its seq is newer than what we hold, ignore it otherwise. Seq jumps are fine
//   (the server conflates for slow clients).
// - account lane (fill): gapless per fill lane, i.e. per update key: `fills:<account>:<symbol>`
//   (or `fills:<account>` on a server with one lane per account). seq == last + 1 applies,
//   seq <= last is a duplicate (e.g. queued before a resnapshot) and is ignored, anything else
//   is a gap: the caller must take a fresh snapshot, and fills are ignored until it arrives.
// - a snapshot replaces the state. The feed subscribes to everything ("*"), so every snapshot
//   it gets, asked for or not, holds every key it follows.

import type {
  Candle,
  FillReport,
  InstrumentState,
  PositionState,
  Snapshot,
  UpdateMessage,
} from "./types";

export type ApplyResult = "applied" | "old" | "gap" | "ignored";

/** Which way a price moved on its last change; `n` grows with every move (to replay a flash). */
export interface Tick {
  dir: 1 | -1;
  n: number;
}

export interface InstrumentTicks {
  bid?: Tick;
  ask?: Tick;
  last?: Tick;
}

export interface FeedData {
  /** Grows with every change of the data. */
  version: number;
  /** Sorted by symbol. */
  instruments: InstrumentState[];
  /** Latest candle per "SYMBOL:interval". */
  candles: Record<string, Candle>;
  /** Sorted by account, then symbol. */
  positions: PositionState[];
  /** Fills per account so far (the sum of its fill lanes' seqs). */
  accounts: Record<string, number>;
  /** Recent mids (or lasts) per symbol, oldest first, for sparklines. */
  sparks: Record<string, number[]>;
  ticks: Record<string, InstrumentTicks>;
}

export const SPARK_POINTS = 60;

export function candleKey(symbol: string, interval: string): string {
  return `${symbol}:${interval}`;
}

function positionKey(account: string, symbol: string): string {
  return `${account}:${symbol}`;
}

/** The key of a fill lane as a snapshot's `accounts[]` entry names it. */
export function fillLaneKey(a: { account: string; symbol?: string | null }): string {
  return a.symbol ? `fills:${a.account}:${a.symbol}` : `fills:${a.account}`;
}

function num(text: string | null | undefined): number | null {
  if (text == null) return null;
  const v = parseFloat(text);
  return Number.isFinite(v) ? v : null;
}

/** The value a sparkline plots for an instrument: the mid, else the last trade. */
function sparkValue(s: InstrumentState): number | null {
  return num(s.mid) ?? num(s.last);
}

/** The state with the higher seq (the snapshot's on a tie). */
function newer<T extends { seq: number }>(held: T | undefined, incoming: T): T {
  return held && held.seq > incoming.seq ? held : incoming;
}

export class FeedStore {
  private instruments = new Map<string, InstrumentState>();
  private candles = new Map<string, Candle>();
  private positions = new Map<string, PositionState>();
  /** Last fill seq per fill lane key. */
  private fillLanes = new Map<string, number>();
  private sparks = new Map<string, number[]>();
  private ticks = new Map<string, InstrumentTicks>();
  private tickCounter = 0;
  private cached: FeedData | null = null;
  /** Parts of the view changed since it was last built; the others keep their identity. */
  private dirty = new Set<keyof FeedData>();

  /** Grows with every change; the view is rebuilt only when it moved. */
  version = 0;
  /** A gap was seen on the account lane: fills are ignored until the next snapshot. */
  awaitingSnapshot = false;
  /** Snapshots applied so far. */
  snapshots = 0;

  constructor(initial?: Snapshot | null) {
    if (initial) this.applySnapshot(initial);
  }

  applySnapshot(snapshot: Snapshot): void {
    // A snapshot replaces the set of keys, but never moves a key back: one from an api process
    // whose Redis mirror lags behind the stream already seen keeps the newer state held here.
    const instruments = this.instruments;
    const candles = this.candles;
    const positions = this.positions;
    const fillLanes = this.fillLanes;
    this.instruments = new Map();
    this.candles = new Map();
    this.positions = new Map();
    this.fillLanes = new Map();
    for (const s of snapshot.instruments ?? []) {
      const held = instruments.get(s.symbol);
      const kept = newer(held, s);
      this.instruments.set(s.symbol, kept);
      if (kept !== held) this.pushSpark(s, held);
    }
    for (const c of snapshot.candles ?? []) {
      const key = candleKey(c.symbol, c.interval);
      this.candles.set(key, newer(candles.get(key), c));
    }
    for (const p of snapshot.positions ?? []) {
      const key = positionKey(p.account, p.symbol);
      this.positions.set(key, newer(positions.get(key), p));
    }
    for (const a of snapshot.accounts ?? []) {
      const key = fillLaneKey(a);
      this.fillLanes.set(key, Math.max(a.fill_seq, fillLanes.get(key) ?? 0));
    }
    // Symbols that left the snapshot lose their history.
    for (const symbol of [...this.sparks.keys()]) {
      if (!this.instruments.has(symbol)) this.sparks.delete(symbol);
    }
    this.awaitingSnapshot = false;
    this.snapshots += 1;
    this.touch("instruments", "candles", "positions", "accounts", "sparks");
  }

  applyUpdate(update: UpdateMessage): ApplyResult {
    switch (update.kind) {
      case "instrument":
        return this.applyInstrument(update.data);
      case "candle": {
        const c = update.data;
        const key = candleKey(c.symbol, c.interval);
        const current = this.candles.get(key);
        if (current && c.seq <= current.seq) return "old";
        this.candles.set(key, c);
        this.touch("candles");
        return "applied";
      }
      case "position":
        return this.applyPosition(update.data) ? "applied" : "old";
      case "fill":
        return this.applyFill(update.key || fillLaneKey(update.data), update.data);
      default:
        return "ignored";
    }
  }

  /** The last fill seq of a fill lane, e.g. "fills:ACC1:ESZ6" (0 if none). */
  fillSeq(laneKey: string): number {
    return this.fillLanes.get(laneKey) ?? 0;
  }

  instrument(symbol: string): InstrumentState | undefined {
    return this.instruments.get(symbol);
  }

  /**
   * An immutable view of the current state: the same object until the state changes, and each
   * part of it (instruments, positions, ...) keeps its identity until that part changes, so
   * memoized components skip what did not move.
   */
  view(): FeedData {
    const old = this.cached;
    if (old && old.version === this.version) return old;
    const fresh = (part: keyof FeedData) => !old || this.dirty.has(part);
    this.cached = {
      version: this.version,
      instruments: fresh("instruments")
        ? [...this.instruments.values()].sort((a, b) => a.symbol.localeCompare(b.symbol))
        : old!.instruments,
      candles: fresh("candles") ? Object.fromEntries(this.candles) : old!.candles,
      positions: fresh("positions")
        ? [...this.positions.values()].sort(
            (a, b) => a.account.localeCompare(b.account) || a.symbol.localeCompare(b.symbol),
          )
        : old!.positions,
      accounts: fresh("accounts") ? this.fillsPerAccount() : old!.accounts,
      sparks: fresh("sparks") ? Object.fromEntries(this.sparks) : old!.sparks,
      ticks: fresh("ticks") ? Object.fromEntries(this.ticks) : old!.ticks,
    };
    this.dirty.clear();
    return this.cached;
  }

  private touch(...parts: (keyof FeedData)[]): void {
    for (const part of parts) this.dirty.add(part);
    this.version += 1;
  }

  private applyInstrument(next: InstrumentState): ApplyResult {
    const current = this.instruments.get(next.symbol);
    if (current && next.seq <= current.seq) return "old";
    if (current) {
      const moved: InstrumentTicks = { ...this.ticks.get(next.symbol) };
      let changed = false;
      for (const field of ["bid", "ask", "last"] as const) {
        const before = num(current[field]);
        const after = num(next[field]);
        if (before != null && after != null && after !== before) {
          moved[field] = { dir: after > before ? 1 : -1, n: ++this.tickCounter };
          changed = true;
        }
      }
      if (changed) {
        this.ticks.set(next.symbol, moved);
        this.dirty.add("ticks");
      }
    }
    this.instruments.set(next.symbol, next);
    this.pushSpark(next, current);
    this.touch("instruments");
    return "applied";
  }

  private applyPosition(next: PositionState): boolean {
    const key = positionKey(next.account, next.symbol);
    const current = this.positions.get(key);
    if (current && next.seq <= current.seq) return false;
    this.positions.set(key, next);
    this.touch("positions");
    return true;
  }

  private fillsPerAccount(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [key, seq] of this.fillLanes) {
      const account = key.split(":")[1];
      out[account] = (out[account] ?? 0) + seq;
    }
    return out;
  }

  private applyFill(lane: string, fill: FillReport): ApplyResult {
    if (this.awaitingSnapshot) return "ignored";
    const last = this.fillSeq(lane);
    if (fill.seq <= last) return "old";
    if (fill.seq !== last + 1) {
      this.awaitingSnapshot = true;
      return "gap";
    }
    this.fillLanes.set(lane, fill.seq);
    if (fill.position) this.applyPosition(fill.position);
    // The blotter (lib/blotter.ts) keeps the fills themselves.
    this.touch("accounts");
    return "applied";
  }

  private pushSpark(next: InstrumentState, previous?: InstrumentState): void {
    const value = sparkValue(next);
    if (value == null) return;
    const series = this.sparks.get(next.symbol);
    if (series && previous && series[series.length - 1] === value) return;
    const base = series ?? [];
    const grown = base.length >= SPARK_POINTS ? base.slice(base.length - SPARK_POINTS + 1) : base.slice();
    grown.push(value);
    this.sparks.set(next.symbol, grown);
    this.dirty.add("sparks");
  }
}

/** Whether an instrument has not changed for longer than `staleMs` at `nowMs`. */
export function isInstrumentStale(s: InstrumentState, nowMs: number, staleMs: number): boolean {
  if (!s.updated_at) return true;
  return nowMs - s.updated_at / 1000 > staleMs;
}
