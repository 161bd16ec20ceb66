// Time and sales of one instrument: its recent prints, newest first, bounded. Pure (no React,
// no fetch): the caller feeds it the history pages of GET /api/trades and the live `trade`
// updates, publishes `prints()`, and reads the history again when a result says `refetch`.
//
// History rows have no seq, live prints have one (the instrument's trade count), and both have
// the event id, which dedupes them. Where the two meet there can be a hole:
//
// - The seam. The page may have been read before the first live print (the subscription is not
//   in place yet, or the server publishes a print a few ms before it stores it), so prints in
//   between may be in neither. The live prints received since the stream started are kept in
//   `streamIds` until a page holds one of them: a page that holds a print covers every print up
//   to it, and the stream has every print after it. Until then each page that holds none of
//   them (and the first live print after a page) asks for a refetch.
// - A jump. A live seq that jumps by more than one means the server skipped prints for this
//   (slow) client: the same again, from the print after the jump.
// - A long disconnect. A full page that holds none of the prints held is cut off from the
//   older ones held by prints it could not hold: those older ones are dropped, so the list
//   never shows a hole that nothing marks.
//
// Prints are ordered by exchange time (`ts`), then by seq, then by event id, newest first.

import type { TradePrint } from "./types";

/** Prints kept (the list's length at most). */
export const TAS_MAX = 200;
/** Rows asked for per history page (`limit` of GET /api/trades). */
export const TAS_PAGE = 100;

export interface TasResult {
  /** The prints changed: publish `prints()`. */
  changed: boolean;
  /** Prints may be missing: read `tradesUrl(symbol)` again and merge the page. */
  refetch: boolean;
}

/** The newest page of an instrument's prints (relative: the dashboard's own origin serves /api). */
export function tradesUrl(symbol: string, limit: number = TAS_PAGE): string {
  return `/api/trades?symbol=${encodeURIComponent(symbol)}&limit=${limit}`;
}

/** Event ids `<source>:<sequence>`: the same source compares by sequence, else as text. */
function compareIds(x: string, y: string): number {
  const i = x.lastIndexOf(":");
  const j = y.lastIndexOf(":");
  if (i >= 0 && j >= 0 && x.slice(0, i) === y.slice(0, j)) {
    const a = Number(x.slice(i + 1));
    const b = Number(y.slice(j + 1));
    if (Number.isFinite(a) && Number.isFinite(b) && a !== b) return a - b;
  }
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Negative when `a` is newer than `b` (comes first). */
export function comparePrints(a: TradePrint, b: TradePrint): number {
  if (a.ts !== b.ts) return b.ts - a.ts;
  if (a.seq != null && b.seq != null && a.seq !== b.seq) return b.seq - a.seq;
  return compareIds(b.event_id, a.event_id);
}

function isPrint(p: unknown): p is TradePrint {
  const r = p as TradePrint | null;
  return r != null && typeof r.event_id === "string" && typeof r.ts === "number" && Number.isFinite(r.ts);
}

const NOTHING: TasResult = { changed: false, refetch: false };

export class TimeAndSales {
  private readonly list: TradePrint[] = [];
  private readonly ids = new Map<string, TradePrint>();
  /** Live prints since the stream started (or jumped) that no page has held yet. */
  private readonly streamIds = new Set<string>();
  private view: readonly TradePrint[] = [];
  private dirty = false;
  private lastSeq: number | null = null;
  private loaded = false;
  private isJoined = false;

  constructor(
    readonly symbol: string,
    readonly max: number = TAS_MAX,
    readonly pageLimit: number = TAS_PAGE,
  ) {}

  /** The prints, newest first: the same array until something changes, then a new one. */
  prints(): readonly TradePrint[] {
    if (this.dirty) {
      this.view = this.list.slice();
      this.dirty = false;
    }
    return this.view;
  }

  get size(): number {
    return this.list.length;
  }

  /** A history page has been merged. */
  get hasHistory(): boolean {
    return this.loaded;
  }

  /** History and stream are known to meet with no hole in between. */
  get joined(): boolean {
    return this.isJoined;
  }

  /** The seq of the last live print, if any. */
  get seq(): number | null {
    return this.lastSeq;
  }

  /** A live print (a `trade` update's data), in stream order. */
  applyLive(print: TradePrint): TasResult {
    if (!isPrint(print) || print.symbol !== this.symbol) return NOTHING;
    const id = print.event_id;
    const held = this.ids.get(id);
    const seq = typeof print.seq === "number" ? print.seq : null;
    if (held) {
      if (held.seq == null && seq != null) {
        // A page held it already: that page covers every print up to this one.
        this.lastSeq = this.lastSeq === null ? seq : Math.max(this.lastSeq, seq);
        this.join();
      }
      return NOTHING;
    }
    let refetch = false;
    if (seq != null) {
      const prev = this.lastSeq;
      this.lastSeq = seq;
      if (prev !== null && seq > prev + 1) {
        // The server skipped prints for this client: a page that holds this one fills the hole.
        this.isJoined = false;
        this.streamIds.clear();
        this.streamIds.add(id);
        refetch = true;
      } else if (!this.isJoined) {
        this.streamIds.add(id);
        // The first print of the stream after a page: that page may be older than it.
        if (prev === null && this.loaded) refetch = true;
      }
    }
    const changed = this.insert(print);
    return { changed, refetch };
  }

  /**
   * A page of GET /api/trades (newest first, no seq), read with `limit` (what decides whether
   * the page is full).
   */
  mergeHistory(rows: readonly TradePrint[], limit: number = this.pageLimit): TasResult {
    const mine = (Array.isArray(rows) ? rows : []).filter(
      (r) => isPrint(r) && (r.symbol == null || r.symbol === this.symbol),
    );
    let overlap = false;
    let meets = false;
    for (const r of mine) {
      if (!this.ids.has(r.event_id)) continue;
      overlap = true;
      if (this.streamIds.has(r.event_id)) meets = true;
    }
    let changed = false;
    if (!overlap && mine.length > 0 && mine.length >= limit && this.list.length > 0) {
      // Nothing in common with a full page: the prints held that are older than it are cut off
      // from it by prints it could not hold.
      let oldest = mine[0];
      for (const r of mine) if (comparePrints(r, oldest) > 0) oldest = r;
      for (let i = this.list.length - 1; i >= 0 && comparePrints(this.list[i], oldest) > 0; i--) {
        this.forget(this.list[i].event_id);
        this.list.pop();
        changed = true;
      }
    }
    let added = 0;
    for (const r of mine) {
      if (this.ids.has(r.event_id)) continue;
      const row: TradePrint = { ...r, symbol: this.symbol };
      delete row.seq; // a page row's place in the stream is unknown
      this.list.push(row);
      this.ids.set(row.event_id, row);
      added += 1;
    }
    if (added > 0) {
      this.list.sort(comparePrints);
      this.evict();
      changed = true;
    }
    this.loaded = true;
    let refetch = false;
    if (!this.isJoined) {
      if (meets) this.join();
      // Live prints came that this page does not hold: it was read before them (or before the
      // database stored them), so prints between may be missing.
      else if (this.streamIds.size > 0) refetch = true;
    }
    if (changed) this.dirty = true;
    return { changed, refetch };
  }

  private join(): void {
    this.isJoined = true;
    this.streamIds.clear();
  }

  private insert(print: TradePrint): boolean {
    let i = 0;
    while (i < this.list.length && comparePrints(this.list[i], print) < 0) i++;
    if (i >= this.max) {
      // Older than every print kept, and the list is full.
      this.streamIds.delete(print.event_id);
      return false;
    }
    this.list.splice(i, 0, print);
    this.ids.set(print.event_id, print);
    this.evict();
    this.dirty = true;
    return true;
  }

  private evict(): void {
    while (this.list.length > this.max) {
      const gone = this.list.pop()!;
      this.forget(gone.event_id);
    }
  }

  private forget(id: string): void {
    this.ids.delete(id);
    this.streamIds.delete(id);
  }
}
