// One candle series (a symbol and an interval) as plain data: no React, no DOM, no fetch, no
// timers. The chart (components/CandleChart.tsx) feeds it live candles, history pages from
// GET /api/candles and snapshots, and asks it what to redraw and what to fetch again.
//
// Rules (docs/protocol.md, "WebSocket protocol" and "HTTP API"):
// - Bars are keyed by bucket start. A bar is replaced only by a candle with a higher `seq`: a
//   candle key's seq covers the whole series and grows by one with every change, so a lower or
//   equal seq is an older (or the same) state, and is ignored. History rows carry the seq too,
//   so history and live candles merge the same way, in either order.
// - A live candle whose seq is more than one above the last seq seen means the server skipped
//   states (conflation for a slow client, or states sent while the page was not connected). If
//   the skipped states may belong to an earlier bucket (the bar that held the last seq is not
//   the candle's own bucket), that earlier bar may have missed its final state: the series
//   becomes "stale from" that bar's start and asks the caller to fetch `since=<that start>`.
//   A skip within one bucket is harmless: every update is the bucket's full state.
// - A history page settles a stale range once it covers the range and holds a row whose seq
//   reaches the last skipped seq (the database had stored every skipped state by then). A page
//   read while the database was still behind leaves the range stale (the caller retries).
// - At most `maxBars` bars are kept. When that is exceeded, the oldest are dropped down to
//   `trimTo` (a batch, so that a full 1 s series is redrawn whole once a minute, not every
//   second).
// - Every operation says what changed: "none", "last" (only the newest bar changed or one new
//   newest bar was added: the chart calls `series.update`) or "all" (an older bar changed, bars
//   were dropped: the chart calls `setData`).

import { IntervalSeries } from "./buckets";
import type { Candle, Interval, Micros } from "./types";

// The bounds per interval, under this series' names: at most MAX_BARS bars (15 minutes of 1 s
// bars, 10 hours of 1 min bars), TRIM_BATCH of them dropped at once.
export { MAX_BUCKETS as MAX_BARS, TRIM_BATCH } from "./buckets";

export type Change = "none" | "last" | "all";

/** Fetch `/api/candles?since=<since>`; `since: null` means the latest page (no `since`). */
export interface Refetch {
  since: Micros | null;
}

export interface SeriesResult {
  change: Change;
  /**
   * What to fetch, when this operation found bars that may be stale (a seq jump, a resync), or
   * a history page left them stale. A range already asked for is not asked again by later live
   * candles (see `pending`).
   */
  refetch: Refetch | null;
}

/** What a history page was asked for: `since` (null for the latest page) and `limit`. */
export interface PageRequest {
  since: Micros | null;
  limit: number;
}

export interface CandleSeriesOptions {
  maxBars?: number;
  /** Bars left after a trim (default `maxBars − TRIM_BATCH`). */
  trimTo?: number;
}

interface Stale {
  /** The start of the earliest bar that may be stale; null: not known, read the latest page. */
  since: Micros | null;
  /** The last skipped seq: a page that holds a row at or above it has every skipped state. */
  needSeq: number;
}

const NONE: SeriesResult = { change: "none", refetch: null };

export class CandleSeries extends IntervalSeries<Candle> {
  readonly maxBars: number;
  private lastSeq_ = 0;
  /** The bucket of the state with `lastSeq_`: where skipped states can start. */
  private lastSeqStart: Micros | null = null;
  /** A history page has been merged: seq 0 then means "nothing yet", a known baseline. */
  private historySeen = false;
  /** The first live candle seen before any history (checked against the first page). */
  private firstLive: { seq: number; start: Micros } | null = null;
  private stale: Stale | null = null;

  constructor(
    readonly symbol: string,
    interval: Interval,
    options: CandleSeriesOptions = {},
  ) {
    super(interval, options.maxBars, options.trimTo);
    this.maxBars = this.buckets.max;
  }

  /** The bars, oldest first. */
  bars(): Candle[] {
    return this.buckets.values();
  }

  bar(start: Micros): Candle | undefined {
    return this.buckets.get(start);
  }

  /** The highest seq seen (live or history); 0 when none. */
  get lastSeq(): number {
    return this.lastSeq_;
  }

  /** What still has to be fetched, if some bars may be stale. */
  get pending(): Refetch | null {
    return this.stale ? { since: this.stale.since } : null;
  }

  /** A candle update from the live feed. */
  applyLive(c: Candle): SeriesResult {
    if (!this.mine(c)) return NONE;
    const op = this.begin();
    if (this.lastSeq_ > 0 || this.historySeen) {
      if (c.seq > this.lastSeq_ + 1 && c.start !== this.lastSeqStart) {
        this.markStale(this.lastSeqStart, c.seq - 1);
        op.signal = true;
      }
    } else if (!this.firstLive) {
      this.firstLive = { seq: c.seq, start: c.start };
    }
    if (this.put(c)) op.changed(c.start);
    this.seen(c);
    return this.end(op);
  }

  /** A page of GET /api/candles (oldest first), answering `page`. */
  mergeHistory(rows: readonly Candle[], page: PageRequest): SeriesResult {
    const op = this.begin();
    let top: Candle | null = null;
    let lastRow: Candle | null = null;
    for (const r of rows) {
      if (!this.mine(r)) continue;
      if (this.put(r)) op.changed(r.start);
      if (!top || r.seq > top.seq) top = r;
      if (!lastRow || r.start > lastRow.start) lastRow = r;
    }
    const pageMax = top?.seq ?? 0;
    // Live candles came first: were states skipped between what the database had and them?
    if (!this.historySeen && this.firstLive && pageMax < this.firstLive.seq - 1 && top?.start !== this.firstLive.start) {
      this.markStale(top ? top.start : page.since, this.firstLive.seq - 1);
    }
    this.historySeen = true;
    if (top) this.seen(top);
    // A `since` page that is full stops before the present; the latest page reaches it.
    const truncated = page.since !== null && rows.length >= page.limit;
    const coversFrom = page.since ?? (rows.length >= page.limit && rows.length ? rows[0].start : -Infinity);
    if (this.stale) {
      const s = this.stale;
      const covers = s.since === null ? page.since === null : coversFrom <= s.since;
      if (covers && !truncated && pageMax >= s.needSeq) {
        this.stale = null;
      } else if (covers && truncated && lastRow) {
        // Go on from the page's last row (its bucket may still have been open).
        s.since = Math.max(s.since ?? lastRow.start, lastRow.start);
      }
    }
    // Still (or newly) stale after a page: the caller reads again (later, if the database was behind).
    op.signal = this.stale !== null;
    return this.end(op);
  }

  /**
   * A snapshot arrived (after a reconnect, a gap, or unasked); `current` is its candle of this
   * series, if it has one. Always answers with a refetch: whatever was missed while the feed
   * was not live is read again, from the earliest bar that may be stale.
   */
  resync(current?: Candle): SeriesResult {
    let result: SeriesResult = NONE;
    if (current && this.mine(current)) {
      if (this.lastSeq_ > 0 && current.seq < this.lastSeq_) result = this.rebase(current);
      else result = this.applyLive(current);
    }
    const since = this.stale ? this.stale.since : this.size ? (this.lastSeqStart ?? this.buckets.lastStart()) : null;
    return { change: result.change, refetch: { since } };
  }

  // --- internals ------------------------------------------------------------------------------

  private mine(c: Candle): boolean {
    return c.symbol === this.symbol && c.interval === this.interval;
  }

  /**
   * The server's series went back (its state was restored from an older point, e.g. after a
   * restart that lost the last writes): what we hold from the newer timeline is not the
   * server's. The snapshot's candle becomes the current bar, bars after it are dropped, and the
   * history from its bucket is read again.
   */
  private rebase(current: Candle): SeriesResult {
    const op = this.begin();
    if (this.buckets.dropAfter(current.start)) op.dropped = true;
    this.buckets.set(current);
    op.changed(current.start);
    this.lastSeq_ = current.seq;
    this.lastSeqStart = current.start;
    this.firstLive = null;
    this.stale = { since: current.start, needSeq: current.seq - 1 };
    op.signal = true;
    return this.end(op);
  }

  private markStale(since: Micros | null, needSeq: number): void {
    if (!this.stale) {
      this.stale = { since, needSeq };
      return;
    }
    const s = this.stale;
    s.since = s.since === null || since === null ? null : Math.min(s.since, since);
    s.needSeq = Math.max(s.needSeq, needSeq);
  }

  private seen(c: Candle): void {
    if (c.seq > this.lastSeq_) {
      this.lastSeq_ = c.seq;
      this.lastSeqStart = c.start;
    }
  }

  /** Stores `c` unless its bar holds an equal or newer state; true when it changed the bar. */
  private put(c: Candle): boolean {
    return this.buckets.put(c);
  }

  private begin() {
    const op = {
      prevLast: this.buckets.lastStart(),
      minChanged: null as Micros | null,
      dropped: false,
      /** The op asks for a refetch: it found (or still has) a stale range. */
      signal: false,
      changed(start: Micros) {
        if (op.minChanged === null || start < op.minChanged) op.minChanged = start;
      },
    };
    return op;
  }

  private end(op: ReturnType<CandleSeries["begin"]>): SeriesResult {
    if (this.buckets.trim().length > 0) {
      op.dropped = true;
      // Bars that are no longer kept need not be read again.
      const first = this.buckets.firstStart()!;
      if (this.stale && this.stale.since !== null && this.stale.since < first) this.stale.since = first;
    }
    const refetch = op.signal && this.stale ? { since: this.stale.since } : null;
    if (op.dropped) return { change: "all", refetch };
    if (op.minChanged === null) return { change: "none", refetch };
    const newest = this.buckets.lastStart();
    // Only the newest bar changed, and it is the old newest bar or one bar past it.
    const onlyNewest = op.minChanged === newest && (op.prevLast === null || newest >= op.prevLast);
    return { change: onlyNewest ? "last" : "all", refetch };
  }
}
