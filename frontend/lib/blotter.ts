// The fills blotter's record, as plain data: no React, no socket, no fetch. `BlotterFeed`
// (lib/blotterFeed.ts) feeds it from the server-rendered page, the live stream, the socket's
// `recovered` answers and GET /api/fills.
//
// What it promises: per fill lane (`fills:<account>:<symbol>`, whose seqs count 1, 2, 3...),
// `laneSeq` is the seq up to which the blotter holds *every* fill of the lane at or after the
// account's oldest loaded page. Fills that arrive beyond a hole are kept and counted in once the
// hole is filled. After each snapshot, `holes()` names the lanes whose server seq is ahead of
// what is held: the caller fills them (recover on the socket, else `since_seq` over HTTP).

import type { StoredFill } from "./types";

/** A fill as the blotter keeps it (a stream fill's `position` is dropped). */
export type BlotterFill = StoredFill;

/** One page of GET /api/fills. */
export interface FillsPage {
  fills: BlotterFill[];
  next: string | null;
}

/** What the first (server) render read: the first page per account and where each lane stood. */
export interface BlotterInit {
  pages: Record<string, FillsPage>;
  /** `fills:<account>:<symbol>` → the lane's seq in the snapshot read *before* the pages. */
  lanes: Record<string, number>;
}

export interface BlotterView {
  /** Newest first (by fill time, then lane and seq). */
  rows: BlotterFill[];
  /** Some account has older fills than those shown: "load more" would read them. */
  more: boolean;
  /** Lanes known to be behind the server and being filled in. */
  refilling: number;
}

export const laneOf = (f: { account: string; symbol: string }): string => `fills:${f.account}:${f.symbol}`;
const rowKey = (f: BlotterFill): string => `${f.account}:${f.symbol}:${f.seq}`;

/** Newest first; ties broken so that the order is total and stable across renders. */
export function newestFirst(a: BlotterFill, b: BlotterFill): number {
  return b.ts - a.ts || (a.account < b.account ? -1 : a.account > b.account ? 1 : 0) ||
    (a.symbol < b.symbol ? -1 : a.symbol > b.symbol ? 1 : 0) || b.seq - a.seq;
}

interface Paging {
  /** The `cursor` for the account's next (older) page; null once everything of the day is in. */
  next: string | null;
  /** Fill time of the oldest row read by paging (µs); rows older than it are not yet complete. */
  oldestTs: number;
}

export class Blotter {
  private rows = new Map<string, BlotterFill>();
  private laneSeqs = new Map<string, number>();
  /** Seqs held beyond a lane's hole, waiting for it to be filled. */
  private ahead = new Map<string, Set<number>>();
  /** Where the server says each lane stands (its last snapshot). */
  private targets = new Map<string, number>();
  private paging = new Map<string, Paging>();
  private cached: BlotterView | null = null;

  /** Grows with every change. */
  version = 0;

  constructor(init?: BlotterInit | null) {
    if (!init) return;
    for (const [lane, seq] of Object.entries(init.lanes)) this.laneSeqs.set(lane, seq);
    for (const [account, page] of Object.entries(init.pages)) this.addPage(account, page);
  }

  /** A page of an account's fills, newest first (the first page or a "load more"). */
  addPage(account: string, page: FillsPage): void {
    // An account's oldest row read by paging (+Infinity before any: an empty page hides nothing).
    let oldest = this.paging.get(account)?.oldestTs ?? Number.POSITIVE_INFINITY;
    for (const f of page.fills) {
      if (f.account !== account) continue;
      oldest = Math.min(oldest, f.ts);
      this.hold(f, true);
    }
    this.paging.set(account, { next: page.next, oldestTs: oldest });
    this.changed();
  }

  /**
   * A fill from the stream, a `recovered` answer or a `since_seq` read. Returns false when it
   * was already held.
   */
  addFill(fill: BlotterFill): boolean {
    const added = this.hold(fill, false);
    if (added) this.changed();
    return added;
  }

  /** The cursor of an account's next page, or null when it has none (or none was read yet). */
  nextPage(account: string): string | null {
    return this.paging.get(account)?.next ?? null;
  }

  /** Accounts with an older page to read. */
  accountsWithMore(): string[] {
    return [...this.paging].filter(([, p]) => p.next != null).map(([a]) => a);
  }

  /** The seq up to which a lane is complete (0 when nothing of it is known). */
  laneSeq(lane: string): number {
    return this.laneSeqs.get(lane) ?? 0;
  }

  /** Every lane's complete seq, for a subscribe's `recover`. */
  recoverFrom(limit: number): Record<string, number> {
    // The lanes that moved last first: they are the likeliest to have moved again.
    const lanes = [...this.laneSeqs].filter(([, seq]) => seq > 0);
    lanes.sort((a, b) => b[1] - a[1]);
    return Object.fromEntries(lanes.slice(0, limit));
  }

  /**
   * Where the server's snapshot says each lane stands. Returns the lanes the blotter is behind
   * on (with the seq it holds: they are to be filled from there), and the accounts it has not
   * read a first page of yet (their lanes are taken as complete up to the snapshot: the first
   * page, read after it, holds what came before).
   */
  noteServerSeqs(lanes: Record<string, number>): { lanes: Record<string, number>; accounts: string[] } {
    const accounts = new Set<string>();
    for (const [lane, seq] of Object.entries(lanes)) {
      const account = lane.split(":")[1] ?? "";
      if (!this.paging.has(account)) {
        accounts.add(account);
        if (seq > this.laneSeq(lane)) this.laneSeqs.set(lane, seq);
      } else if (!this.laneSeqs.has(lane)) {
        // A lane whose first fill happened while the blotter was not looking: read from its start.
        this.laneSeqs.set(lane, 0);
      }
      this.targets.set(lane, Math.max(seq, this.targets.get(lane) ?? 0));
    }
    this.changed();
    return { lanes: this.holes(), accounts: [...accounts] };
  }

  /** Lanes behind the server (held seq < snapshot seq), with the seq held. */
  holes(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [lane, target] of this.targets) {
      const held = this.laneSeq(lane);
      if (held < target) out[lane] = held;
    }
    return out;
  }

  view(): BlotterView {
    if (this.cached) return this.cached;
    // Rows older than some account's oldest page may be missing that account's fills: they are
    // shown once that account's older page is read.
    let cutoff = Number.NEGATIVE_INFINITY;
    for (const p of this.paging.values()) {
      if (p.next != null && Number.isFinite(p.oldestTs)) cutoff = Math.max(cutoff, p.oldestTs);
    }
    const rows = [...this.rows.values()].filter((f) => f.ts >= cutoff).sort(newestFirst);
    this.cached = { rows, more: this.accountsWithMore().length > 0, refilling: Object.keys(this.holes()).length };
    return this.cached;
  }

  /** The lane is complete up to `seq`, and to whatever was held right beyond it. */
  private advance(lane: string, seq: number): void {
    let next = seq;
    const ahead = this.ahead.get(lane);
    if (ahead) {
      for (const held of ahead) if (held <= seq) ahead.delete(held);
      while (ahead.delete(next + 1)) next += 1;
      if (ahead.size === 0) this.ahead.delete(lane);
    }
    this.laneSeqs.set(lane, next);
  }

  private changed(): void {
    this.cached = null;
    this.version += 1;
  }

  private hold(fill: BlotterFill, paged: boolean): boolean {
    const key = rowKey(fill);
    if (this.rows.has(key)) return false;
    const { position: _position, ...row } = fill as BlotterFill & { position?: unknown };
    this.rows.set(key, row);
    const lane = laneOf(fill);
    const seq = this.laneSeq(lane);
    if (paged) {
      // A page holds everything of its account from its oldest row up: a lane's newest row in
      // it is where the lane is complete to, unless the lane already knew more.
      if (fill.seq > seq) this.advance(lane, fill.seq);
      return true;
    }
    if (fill.seq <= seq) return true;
    if (fill.seq === seq + 1) {
      this.advance(lane, fill.seq);
    } else {
      let ahead = this.ahead.get(lane);
      if (!ahead) this.ahead.set(lane, (ahead = new Set()));
      ahead.add(fill.seq);
    }
    return true;
  }
}
