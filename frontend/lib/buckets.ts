// A bounded, ordered store of time buckets (a chart's bars or points), shared by the candle and
// P&L series: one value per bucket start, replaced only by a higher `seq` (never an older state
// over a newer one), kept in start order, and trimmed in batches from the oldest.

import type { Interval, Micros } from "./types";

/** The most buckets a chart series keeps per interval: 15 minutes of 1 s buckets, 10 hours of 1 min ones. */
export const MAX_BUCKETS: Record<Interval, number> = { "1s": 900, "1m": 600 };
/** How many buckets a trim drops below `MAX_BUCKETS` at once (one full redraw per this many new ones). */
export const TRIM_BATCH: Record<Interval, number> = { "1s": 60, "1m": 30 };

export class Buckets<T extends { start: Micros; seq: number }> {
  private readonly byStart = new Map<Micros, T>();
  /** Bucket starts, ascending. */
  private starts_: Micros[] = [];

  /**
   * Above `max` values a trim keeps the newest `trimTo` (a batch, so that a full series is
   * redrawn whole once per batch rather than on every new bucket).
   */
  readonly max: number;
  readonly trimTo: number;

  /** Both bounds are whole and at least 1, and `trimTo` is at most `max`. */
  constructor(max: number, trimTo: number) {
    this.max = Math.max(1, Math.floor(max));
    this.trimTo = Math.min(this.max, Math.max(1, Math.floor(trimTo)));
  }

  /** Oldest first. */
  values(): T[] {
    return this.starts_.map((start) => this.byStart.get(start)!);
  }

  get(start: Micros): T | undefined {
    return this.byStart.get(start);
  }

  has(start: Micros): boolean {
    return this.byStart.has(start);
  }

  last(): T | undefined {
    return this.byStart.get(this.starts_[this.starts_.length - 1]);
  }

  /** The newest bucket's start, or null. */
  lastStart(): Micros | null {
    const n = this.starts_.length;
    return n ? this.starts_[n - 1] : null;
  }

  firstStart(): Micros | null {
    return this.starts_.length ? this.starts_[0] : null;
  }

  get size(): number {
    return this.starts_.length;
  }

  /** The values from `from` on (oldest first). */
  from(from: Micros): T[] {
    const out: T[] = [];
    for (let i = this.starts_.length - 1; i >= 0 && this.starts_[i] >= from; i--) out.push(this.byStart.get(this.starts_[i])!);
    return out.reverse();
  }

  /** Stores `value` unless its bucket holds an equal or newer seq; true when it changed it. */
  put(value: T): boolean {
    const held = this.byStart.get(value.start);
    if (held && value.seq <= held.seq) return false;
    this.set(value);
    return true;
  }

  /** Stores `value` whatever its bucket held. */
  set(value: T): void {
    if (!this.byStart.has(value.start)) this.insertStart(value.start);
    this.byStart.set(value.start, value);
  }

  /** Drops the buckets after `start`; true when there were some. */
  dropAfter(start: Micros): boolean {
    let dropped = false;
    while (this.starts_.length && this.starts_[this.starts_.length - 1] > start) {
      this.byStart.delete(this.starts_.pop()!);
      dropped = true;
    }
    return dropped;
  }

  /** Above the bound: drops the oldest down to `trimTo` and returns their starts. */
  trim(): Micros[] {
    if (this.starts_.length <= this.max) return [];
    const dropped = this.starts_.slice(0, this.starts_.length - this.trimTo);
    for (const start of dropped) this.byStart.delete(start);
    this.starts_ = this.starts_.slice(dropped.length);
    return dropped;
  }

  private insertStart(start: Micros): void {
    const starts = this.starts_;
    if (!starts.length || start > starts[starts.length - 1]) {
      starts.push(start);
      return;
    }
    let lo = 0;
    let hi = starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid] < start) lo = mid + 1;
      else hi = mid;
    }
    starts.splice(lo, 0, start);
  }
}

/**
 * What the candle and P&L series share: the buckets of one interval, at most `max` of them
 * (default `MAX_BUCKETS`), trimmed to `trimTo` (default `max − TRIM_BATCH`).
 */
export abstract class IntervalSeries<T extends { start: Micros; seq: number }> {
  protected readonly buckets: Buckets<T>;
  readonly trimTo: number;

  constructor(readonly interval: Interval, max?: number, trimTo?: number) {
    const bound = max ?? MAX_BUCKETS[interval];
    this.buckets = new Buckets(bound, trimTo ?? bound - TRIM_BATCH[interval]);
    this.trimTo = this.buckets.trimTo;
  }

  /** The newest bucket's value. */
  last(): T | undefined {
    return this.buckets.last();
  }

  get size(): number {
    return this.buckets.size;
  }
}
