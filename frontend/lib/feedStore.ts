// The live feed's state, as plain data and pure functions: no React, no socket, no timers.
// `useLiveFeed` keeps one of these outside React state and publishes an immutable view of it
// at most once per animation frame.
//
// Ordering rules (README, "WebSocket protocol"):
// - market lane (instrument, candle, position): each update is the full state of its key;
//   apply it when its seq is newer than what we hold, ignore it otherwise. Seq jumps are fine
//   (the server conflates for slow clients).
// - account lane (fill, key fills:<account>): gapless. seq == last + 1 applies, seq <= last is
//   a duplicate (e.g. queued before a resnapshot) and is ignored, anything else is a gap: the
//   caller must take a fresh snapshot, and fills are ignored until it arrives.
// - a snapshot replaces the state.

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
  /** Last fill seq per account. */
  accounts: Record<string, number>;
  /** Recent mids (or lasts) per symbol, oldest first, for sparklines. */
  sparks: Record<string, number[]>;
  ticks: Record<string, InstrumentTicks>;
  /** Recent fills, newest first. */
  fills: FillReport[];
}

export const SPARK_POINTS = 60;
export const MAX_FILLS = 50;

export function candleKey(symbol: string, interval: string): string {
  return `${symbol}:${interval}`;
}

function positionKey(account: string, symbol: string): string {
  return `${account}:${symbol}`;
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

export class FeedStore {
  private instruments = new Map<string, InstrumentState>();
  private candles = new Map<string, Candle>();
  private positions = new Map<string, PositionState>();
  private accounts = new Map<string, number>();
  private sparks = new Map<string, number[]>();
  private ticks = new Map<string, InstrumentTicks>();
  private fills: FillReport[] = [];
  private tickCounter = 0;
  private cached: FeedData | null = null;

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
    this.instruments.clear();
    this.candles.clear();
    this.positions.clear();
    this.accounts.clear();
    for (const s of snapshot.instruments ?? []) {
      this.instruments.set(s.symbol, s);
      this.pushSpark(s);
    }
    for (const c of snapshot.candles ?? []) this.candles.set(candleKey(c.symbol, c.interval), c);
    for (const p of snapshot.positions ?? []) this.positions.set(positionKey(p.account, p.symbol), p);
    for (const a of snapshot.accounts ?? []) this.accounts.set(a.account, a.fill_seq);
    // Symbols that left the snapshot lose their history.
    for (const symbol of [...this.sparks.keys()]) {
      if (!this.instruments.has(symbol)) this.sparks.delete(symbol);
    }
    this.awaitingSnapshot = false;
    this.snapshots += 1;
    this.version += 1;
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
        this.version += 1;
        return "applied";
      }
      case "position":
        return this.applyPosition(update.data) ? "applied" : "old";
      case "fill":
        return this.applyFill(update.data);
      default:
        return "ignored";
    }
  }

  /** The last fill seq known for an account (0 if none). */
  fillSeq(account: string): number {
    return this.accounts.get(account) ?? 0;
  }

  instrument(symbol: string): InstrumentState | undefined {
    return this.instruments.get(symbol);
  }

  /** An immutable view of the current state; the same object until the state changes. */
  view(): FeedData {
    if (this.cached && this.cached.version === this.version) return this.cached;
    const instruments = [...this.instruments.values()].sort((a, b) => a.symbol.localeCompare(b.symbol));
    const positions = [...this.positions.values()].sort(
      (a, b) => a.account.localeCompare(b.account) || a.symbol.localeCompare(b.symbol),
    );
    this.cached = {
      version: this.version,
      instruments,
      candles: Object.fromEntries(this.candles),
      positions,
      accounts: Object.fromEntries(this.accounts),
      sparks: Object.fromEntries(this.sparks),
      ticks: Object.fromEntries(this.ticks),
      fills: this.fills,
    };
    return this.cached;
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
      if (changed) this.ticks.set(next.symbol, moved);
    }
    this.instruments.set(next.symbol, next);
    this.pushSpark(next, current);
    this.version += 1;
    return "applied";
  }

  private applyPosition(next: PositionState): boolean {
    const key = positionKey(next.account, next.symbol);
    const current = this.positions.get(key);
    if (current && next.seq <= current.seq) return false;
    this.positions.set(key, next);
    this.version += 1;
    return true;
  }

  private applyFill(fill: FillReport): ApplyResult {
    if (this.awaitingSnapshot) return "ignored";
    const last = this.fillSeq(fill.account);
    if (fill.seq <= last) return "old";
    if (fill.seq !== last + 1) {
      this.awaitingSnapshot = true;
      return "gap";
    }
    this.accounts.set(fill.account, fill.seq);
    if (fill.position) this.applyPosition(fill.position);
    this.fills = [fill, ...this.fills].slice(0, MAX_FILLS);
    this.version += 1;
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
  }
}

/** Whether an instrument has not changed for longer than `staleMs` at `nowMs`. */
export function isInstrumentStale(s: InstrumentState, nowMs: number, staleMs: number): boolean {
  if (!s.updated_at) return true;
  return nowMs - s.updated_at / 1000 > staleMs;
}
