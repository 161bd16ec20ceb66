// Keeps the fills blotter complete: it starts from the server-rendered pages, takes every fill
// the live feed applies, asks the socket to `recover` the lanes it holds on every (re)subscribe,
// and reads over HTTP (GET /api/fills?since_seq=) whatever the socket could not give: a lane
// the server would not recover, one beyond the `recover` bound, a new account. "Load more"
// reads older pages. Publishes an immutable view at most once per frame.

import { Blotter, laneOf, type BlotterInit, type BlotterView, type FillsPage } from "./blotter";
import { backoffDelay } from "./backoff";
import { createFrameConflator, type Caf, type FrameConflator, type Raf } from "./conflate";
import { listen } from "./listen";
import type { LiveFeed } from "./liveFeed";
import type { RecoveredLane, Snapshot, StoredFill } from "./types";

/** Lanes a subscribe may carry in `recover` (the server's TTPULSE_WS_MAX_SUBSCRIPTIONS default). */
export const MAX_RECOVER_LANES = 200;
/** Fills per `since_seq` read, and the most reads one refill of a lane may take. */
export const REFILL_PAGE = 500;
export const MAX_REFILL_PAGES = 20;
/** Fills per "load more" page per account. */
export const MORE_PAGE = 100;
/** The longest wait between reads of a lane that stays behind (or of a read that fails). */
export const RETRY_CAP_MS = 15000;
/** A lane the socket was asked to recover and that is still behind after this is read over HTTP. */
export const RECOVER_WAIT_MS = 3000;

export type FetchJson = (path: string) => Promise<unknown>;

export interface BlotterFeedView extends BlotterView {
  /** "Load more" is reading. */
  loadingMore: boolean;
  /** The last read that failed (it is retried), or null. */
  error: string | null;
}

export interface BlotterFeedOptions {
  fetchJson?: FetchJson;
  raf?: Raf;
  caf?: Caf;
  random?: () => number;
  /** Publish the view at most this often (ms); 0: every frame. */
  publishEveryMs?: number;
}

async function browserFetchJson(path: string): Promise<unknown> {
  const res = await fetch(path, { cache: "no-store", headers: { accept: "application/json" } });
  if (!res.ok) {
    let detail = "";
    try {
      detail = ((await res.json()) as { message?: string }).message ?? "";
    } catch {
      /* not JSON */
    }
    throw new Error(`${path.split("?")[0]}: HTTP ${res.status}${detail ? ` (${detail})` : ""}`);
  }
  return res.json();
}

const enc = encodeURIComponent;

export class BlotterFeed {
  readonly blotter: Blotter;
  private readonly fetchJson: FetchJson;
  private readonly conflator: FrameConflator;
  private readonly listeners = new Set<() => void>();
  private readonly random?: () => number;
  private readonly serverView: BlotterFeedView;
  private view: BlotterFeedView;
  private offs: (() => void)[] = [];
  /** What the last subscribe asked the socket to recover. */
  private askedToRecover: Record<string, number> = {};
  /** Lanes being read over HTTP, and accounts whose first page is being read. */
  private readingLanes = new Set<string>();
  private readingAccounts = new Set<string>();
  /** Accounts whose first page is still to be read (kept until a read succeeds). */
  private firstPageWanted = new Set<string>();
  private recoverTimer: ReturnType<typeof setTimeout> | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private failures = 0;
  private loadingMore = false;
  private error: string | null = null;
  private running = false;

  constructor(init: BlotterInit | null, options: BlotterFeedOptions = {}) {
    this.blotter = new Blotter(init);
    this.fetchJson = options.fetchJson ?? browserFetchJson;
    this.random = options.random;
    this.conflator = createFrameConflator(() => this.publish(), options.raf, options.caf, options.publishEveryMs ?? 0);
    this.serverView = this.buildView();
    this.view = this.serverView;
  }

  /** The `recover` option of the LiveFeed: the lanes held, remembered to tell answers apart. */
  recoverFrom = (): Record<string, number> => {
    this.askedToRecover = this.blotter.recoverFrom(MAX_RECOVER_LANES);
    return this.askedToRecover;
  };

  /** Starts following a live feed (whose `recover` option is this feed's `recoverFrom`). */
  attach(feed: LiveFeed): void {
    this.running = true;
    this.offs.push(
      feed.onFill((fill) => {
        if (this.blotter.addFill(fill)) this.conflator.schedule();
      }),
      feed.onResync((snapshot) => this.onSnapshot(snapshot)),
      feed.onRecovered((lanes) => this.onRecovered(lanes)),
    );
  }

  detach(): void {
    this.running = false;
    for (const off of this.offs) off();
    this.offs = [];
    for (const t of [this.recoverTimer, this.retryTimer]) if (t) clearTimeout(t);
    this.recoverTimer = this.retryTimer = null;
    this.conflator.cancel();
  }

  subscribe = (listener: () => void): (() => void) => listen(this.listeners, listener);

  getView = (): BlotterFeedView => this.view;

  getServerView = (): BlotterFeedView => this.serverView;

  /** Reads the next older page of every account that has one. */
  async loadMore(): Promise<void> {
    if (this.loadingMore) return;
    this.loadingMore = true;
    this.conflator.schedule();
    try {
      await Promise.all(
        this.blotter.accountsWithMore().map(async (account) => {
          const cursor = this.blotter.nextPage(account);
          if (cursor == null) return;
          const page = (await this.fetchJson(
            `/api/fills?account=${enc(account)}&cursor=${enc(cursor)}&limit=${MORE_PAGE}`,
          )) as FillsPage;
          this.blotter.addPage(account, page);
        }),
      );
      this.error = null;
    } catch (e) {
      this.error = `could not read older fills: ${message(e)}`;
    } finally {
      this.loadingMore = false;
      this.conflator.schedule();
    }
  }

  // --- internals ------------------------------------------------------------------------------

  private onSnapshot(snapshot: Snapshot): void {
    const lanes: Record<string, number> = {};
    for (const a of snapshot.accounts ?? []) if (a.symbol) lanes[laneOf({ account: a.account, symbol: a.symbol })] = a.fill_seq;
    const behind = this.blotter.noteServerSeqs(lanes);
    const asked = this.askedToRecover;
    this.askedToRecover = {};
    for (const account of behind.accounts) this.firstPageWanted.add(account);
    for (const account of this.firstPageWanted) void this.readFirstPage(account);
    for (const [lane, held] of Object.entries(behind.lanes)) {
      // The socket answers these itself (a `recovered` message follows the snapshot).
      if (asked[lane] === held) continue;
      void this.refill(lane);
    }
    // Whatever the socket was to recover and did not (a lost answer, a server too old to know
    // `recover`) is read over HTTP a little later.
    if (this.recoverTimer) clearTimeout(this.recoverTimer);
    this.recoverTimer = setTimeout(() => {
      this.recoverTimer = null;
      for (const lane of Object.keys(this.blotter.holes())) void this.refill(lane);
    }, RECOVER_WAIT_MS);
    this.conflator.schedule();
  }

  private onRecovered(lanes: RecoveredLane[]): void {
    for (const lane of lanes) {
      for (const fill of lane.fills ?? []) this.blotter.addFill(fill);
      if (!lane.recovered) void this.refill(lane.key);
    }
    this.conflator.schedule();
  }

  /** Reads a lane's fills after the seq held, oldest first, until it is no longer behind. */
  private async refill(lane: string): Promise<void> {
    if (!this.running || this.readingLanes.has(lane)) return;
    const [, account, symbol] = lane.split(":");
    if (!account || !symbol) return;
    this.readingLanes.add(lane);
    try {
      for (let page = 0; page < MAX_REFILL_PAGES; page += 1) {
        const held = this.blotter.laneSeq(lane);
        if (!(lane in this.blotter.holes())) break;
        const body = (await this.fetchJson(
          `/api/fills?account=${enc(account)}&symbol=${enc(symbol)}&since_seq=${held}&limit=${REFILL_PAGE}`,
        )) as FillsPage;
        for (const fill of body.fills) this.blotter.addFill(fill);
        this.conflator.schedule();
        if (body.fills.length < REFILL_PAGE || this.blotter.laneSeq(lane) === held) break;
      }
      this.error = null;
      // Still behind (the database lags the stream, or the gap is more than one refill reads):
      // read again after a backoff, until the lane is complete.
      if (lane in this.blotter.holes()) this.retryLater();
      else this.failures = 0;
    } catch (e) {
      this.failed(`could not read the fills of ${account} ${symbol}: ${message(e)}`);
    } finally {
      this.readingLanes.delete(lane);
    }
  }

  private async readFirstPage(account: string): Promise<void> {
    if (!this.running || this.readingAccounts.has(account)) return;
    this.readingAccounts.add(account);
    try {
      const page = (await this.fetchJson(`/api/fills?account=${enc(account)}&limit=${MORE_PAGE}`)) as FillsPage;
      this.blotter.addPage(account, page);
      this.firstPageWanted.delete(account);
      this.succeeded();
    } catch (e) {
      this.failed(`could not read the fills of ${account}: ${message(e)}`);
    } finally {
      this.readingAccounts.delete(account);
      this.conflator.schedule();
    }
  }

  private succeeded(): void {
    this.failures = 0;
    this.error = null;
  }

  /** A read failed: say so, and try every hole again after a backoff. */
  private failed(text: string): void {
    this.error = text;
    this.conflator.schedule();
    this.retryLater();
  }

  /** Reads every hole and wanted first page again after a backoff (one timer for all). */
  private retryLater(): void {
    if (this.retryTimer || !this.running) return;
    const delay = backoffDelay(this.failures++, { random: this.random, capMs: RETRY_CAP_MS });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      for (const account of this.firstPageWanted) void this.readFirstPage(account);
      for (const lane of Object.keys(this.blotter.holes())) void this.refill(lane);
    }, delay);
  }

  private buildView(): BlotterFeedView {
    return { ...this.blotter.view(), loadingMore: this.loadingMore, error: this.error };
  }

  private publish(): void {
    this.view = this.buildView();
    for (const listener of this.listeners) listener();
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export type { StoredFill };
