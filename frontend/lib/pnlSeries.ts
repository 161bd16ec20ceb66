// One account's P&L over time at one interval (1 s or 1 min buckets), as plain data: no React,
// no DOM, no fetch, no timers. The chart (components/PnlChart.tsx) feeds it pages of
// GET /api/pnl and live `pnl` samples, and asks it what to redraw.
//
// Rules (docs/protocol.md, "HTTP API" and "WebSocket protocol"):
// - Points are keyed by bucket start (Unix µs) and kept oldest first.
// - A point is replaced only by a sample with a higher `seq` (the sample time in Unix seconds,
//   growing with every sample of the key): an equal or lower seq is the same or an older state
//   and is ignored. History rows carry the seq too, so a page and live samples merge the same
//   way whichever arrives first.
// - At most `maxPoints` points are kept. When that is exceeded, the oldest are dropped down to
//   `trimTo` (a batch: a full 1 s series is redrawn whole once a minute, not every second). A
//   sample older than the oldest point ever dropped is ignored (it would only be dropped again).
// - Malformed input never throws: a row that is not a P&L point (missing account, interval,
//   start or seq) is skipped; a point whose decimals do not parse is kept (its seq still orders
//   it) but has no chart value (a gap in the line) and is printed as given.
// - Every operation says what changed: "none", "last" (only the newest point changed, or one
//   new newest point was added: the chart can `update` it) or "all" (an older point changed or
//   points were dropped: `setData`). `takeRedraw` sums up everything since the last redraw.

import { DASH, fmtMoney } from "./format";
import { parseDec } from "./decimal";
import { IntervalSeries } from "./buckets";
import type { Interval, Micros, PnlPoint } from "./types";

export type { PnlPoint } from "./types";

// The bounds per interval, under this series' names: at most MAX_POINTS points (15 minutes of
// 1 s buckets, 10 hours of 1 min buckets), TRIM_BATCH of them dropped at once.
export { MAX_BUCKETS as MAX_POINTS, TRIM_BATCH } from "./buckets";

export type PnlChange = "none" | "last" | "all";

export interface PnlResult {
  change: PnlChange;
  /** The bucket starts whose point was added or replaced, ascending. */
  changed: Micros[];
  /** How many of the oldest points were dropped to keep the bound. */
  dropped: number;
}

/**
 * What the chart has to do to show the series: nothing, replace everything (`setData`), or
 * `update` these points in order (each at or after the newest point the chart holds).
 */
export type Redraw =
  | { kind: "none" }
  | { kind: "all"; points: PnlPoint[] }
  | { kind: "update"; points: PnlPoint[] };

export interface PnlSeriesOptions {
  maxPoints?: number;
  /** Points left after a trim (default `maxPoints − TRIM_BATCH`). */
  trimTo?: number;
}

/** A line point as lightweight-charts takes it (time in Unix seconds); no value: a gap. */
export type PnlChartDatum = { time: number; value: number } | { time: number };

const DECIMAL_RE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$/;

/** The value of a decimal string as a float, for the chart only; null when it is no decimal. */
export function decValue(text: unknown): number | null {
  if (typeof text !== "string") return null;
  const t = text.trim();
  if (!DECIMAL_RE.test(t)) return null;
  const v = parseFloat(t);
  return Number.isFinite(v) ? v : null;
}

/** -1, 0 or 1 for a decimal string, exactly; 0 for anything that is no decimal. */
export function decSign(text: unknown): -1 | 0 | 1 {
  if (typeof text !== "string" || !DECIMAL_RE.test(text.trim())) return 0;
  try {
    const { units } = parseDec(text);
    return units < 0n ? -1 : units > 0n ? 1 : 0;
  } catch {
    return 0;
  }
}

/**
 * Money for the legend: exact (fmtMoney: rounded half away from zero to 2 decimals, grouped),
 * never through floats. Text that is no decimal is printed as given (cut to 40 characters);
 * a missing value is a dash.
 */
export function fmtPnl(text: unknown): string {
  if (text == null) return DASH;
  if (typeof text !== "string") return String(text).slice(0, 40) || DASH;
  if (!DECIMAL_RE.test(text.trim())) return text.slice(0, 40) || DASH;
  try {
    return fmtMoney(text.trim());
  } catch {
    return text.slice(0, 40);
  }
}

/** Whether `x` has what a point needs to be placed: account, interval, start and seq. */
export function isPnlPoint(x: unknown): x is PnlPoint {
  if (typeof x !== "object" || x === null) return false;
  const p = x as Record<string, unknown>;
  return (
    typeof p.account === "string" &&
    (p.interval === "1s" || p.interval === "1m") &&
    typeof p.start === "number" &&
    Number.isSafeInteger(p.start) &&
    p.start >= 0 &&
    typeof p.seq === "number" &&
    Number.isFinite(p.seq)
  );
}

/** The chart time of a bucket: its start in Unix seconds. */
export function chartTime(start: Micros): number {
  return Math.floor(start / 1_000_000);
}

/** A point as the chart draws it: its total, or a gap when the total is no decimal. */
export function toChartDatum(p: PnlPoint): PnlChartDatum {
  const value = decValue(p.total);
  const time = chartTime(p.start);
  return value === null ? { time } : { time, value };
}

/**
 * Points as chart data: strictly ascending times (lightweight-charts refuses equal times; two
 * starts within one second keep the later one).
 */
export function toChartData(points: readonly PnlPoint[]): PnlChartDatum[] {
  const out: PnlChartDatum[] = [];
  for (const p of points) {
    const d = toChartDatum(p);
    const prev = out[out.length - 1];
    if (prev && prev.time === d.time) out[out.length - 1] = d;
    else if (!prev || d.time > prev.time) out.push(d);
  }
  return out;
}

interface Op {
  prevLast: Micros | null;
  changed: Set<Micros>;
  dropped: number;
}

export class PnlSeries extends IntervalSeries<PnlPoint> {
  readonly maxPoints: number;
  private maxSeq = 0;
  /** Samples before this start were dropped by a trim: they are not taken again. */
  private floor: Micros | null = null;
  // What the chart holds: the newest start drawn (null: nothing, or not drawn yet), and what
  // changed since.
  private drawnLast: Micros | null = null;
  private dirtyMin: Micros | null = null;
  /** A fresh series must clear whatever the chart showed before. */
  private dirtyAll = true;

  constructor(
    readonly account: string,
    interval: Interval,
    options: PnlSeriesOptions = {},
  ) {
    super(interval, options.maxPoints, options.trimTo);
    this.maxPoints = this.buckets.max;
  }

  /** The points, oldest first. */
  points(): PnlPoint[] {
    return this.buckets.values();
  }

  point(start: Micros): PnlPoint | undefined {
    return this.buckets.get(start);
  }

  /** The highest seq taken so far; 0 when none. */
  get lastSeq(): number {
    return this.maxSeq;
  }

  /**
   * Where to read again after a snapshot (a reconnect may have left a gap): the start of the
   * newest point held (its bucket may have changed since), or null (the latest page) when
   * nothing is held. GET /api/pnl answers the latest `limit` rows from there on: if the gap is
   * longer than that, what lies before the page would have been trimmed anyway.
   */
  refetchFrom(): Micros | null {
    return this.buckets.lastStart();
  }

  /** A live `pnl` sample. */
  applyLive(p: PnlPoint): PnlResult {
    const op = this.begin();
    if (this.mine(p)) this.put(p, op);
    return this.end(op);
  }

  /** A page of GET /api/pnl (any order; rows of another account or interval are skipped). */
  mergeHistory(rows: readonly unknown[]): PnlResult {
    const op = this.begin();
    if (Array.isArray(rows)) for (const r of rows) if (this.mine(r)) this.put(r, op);
    return this.end(op);
  }

  /**
   * What to draw since the last call, and from then on the chart is taken to hold it. Call it
   * only when there is a chart to draw on: until then the changes wait.
   */
  takeRedraw(): Redraw {
    if (!this.dirtyAll && this.dirtyMin === null) return { kind: "none" };
    let redraw: Redraw;
    if (this.dirtyAll || this.drawnLast === null || this.dirtyMin! < this.drawnLast) {
      redraw = { kind: "all", points: this.points() };
    } else {
      const from = this.dirtyMin!;
      redraw = { kind: "update", points: this.buckets.from(from) };
    }
    this.drawnLast = this.refetchFrom();
    this.dirtyMin = null;
    this.dirtyAll = false;
    return redraw;
  }

  /** The chart was (re)created or failed to draw: the next redraw replaces everything. */
  markUndrawn(): void {
    this.dirtyAll = true;
  }

  /** Whether a redraw is waiting. */
  get dirty(): boolean {
    return this.dirtyAll || this.dirtyMin !== null;
  }

  // --- internals ------------------------------------------------------------------------------

  private mine(p: unknown): p is PnlPoint {
    return isPnlPoint(p) && p.account === this.account && p.interval === this.interval;
  }

  private put(p: PnlPoint, op: Op): void {
    if (this.floor !== null && p.start < this.floor) return;
    if (!this.buckets.put(p)) return;
    if (p.seq > this.maxSeq) this.maxSeq = p.seq;
    op.changed.add(p.start);
  }

  private begin(): Op {
    return { prevLast: this.buckets.lastStart(), changed: new Set(), dropped: 0 };
  }

  private end(op: Op): PnlResult {
    const dropped = this.buckets.trim();
    if (dropped.length > 0) {
      for (const start of dropped) op.changed.delete(start);
      this.floor = this.buckets.firstStart();
      op.dropped = dropped.length;
      this.dirtyAll = true;
    }
    const changed = [...op.changed].sort((a, b) => a - b);
    for (const start of changed) if (this.dirtyMin === null || start < this.dirtyMin) this.dirtyMin = start;
    if (op.dropped > 0) return { change: "all", changed, dropped: op.dropped };
    if (changed.length === 0) return { change: "none", changed, dropped: 0 };
    const newest = this.buckets.lastStart();
    const onlyNewest = changed.length === 1 && changed[0] === newest && (op.prevLast === null || newest >= op.prevLast);
    return { change: onlyNewest ? "last" : "all", changed, dropped: 0 };
  }
}
