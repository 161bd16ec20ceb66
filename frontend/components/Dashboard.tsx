"use client";
// The trading screen. Rendered on the server with the snapshot the page fetched (so the first
// HTML has prices), then hydrated: useLiveFeed opens the WebSocket and keeps it current.

import { useCallback, useEffect, useMemo, useState } from "react";
import { useLiveFeed } from "@/lib/useLiveFeed";
import { credentialAccepted, reloadForSignIn } from "@/lib/signIn";
import type { FeedView } from "@/lib/liveFeed";
import type { BlotterInit } from "@/lib/blotter";
import { BlotterFeed } from "@/lib/blotterFeed";
import type { Instrument, Snapshot } from "@/lib/types";
import Header from "./Header";
import MarketWatch from "./MarketWatch";
import CandleChart from "./CandleChart";
import Positions from "./Positions";
import Fills from "./Fills";
import PanelBoundary from "./PanelBoundary";
import PnlChart from "./PnlChart";
import InstrumentDetail from "./InstrumentDetail";
import WatchlistBar from "./WatchlistBar";
import { storedActiveSymbols, useWatchlists } from "@/lib/useWatchlists";
import {
  activeSymbols,
  addSymbol,
  arrange,
  createList,
  deleteActiveList,
  removeSymbol,
  setActive,
  toggleSort,
  type SortColumn,
} from "@/lib/watchlist";
import { fmtInt } from "@/lib/format";

/**
 * The screen shows the newest data at most this often: five times a second is as fast as a
 * trader reads a price, and it keeps the page cheap to leave open all day at any update rate.
 */
export const VIEW_EVERY_MS = 200;

/** An instrument that has not changed for this long (while connected) is marked stale. */
export const INSTRUMENT_STALE_MS = 5000;

export interface DashboardProps {
  initial: Snapshot | null;
  /** The blotter's first pages, read by the server after the snapshot. */
  initialFills?: BlotterInit | null;
  catalog: Instrument[];
  wsUrl: string | null;
  serverNow: number;
  apiError: string | null;
  /**
   * The first render was signed in (a token the API accepted): when the feed finds the sign-in
   * ended, the page reloads to sign in again.
   */
  signedIn?: boolean;
}

function Banner({ view, apiError, onRetry }: { view: FeedView; apiError: string | null; onRetry: () => void }) {
  if (view.conn === "live" && view.refusal) {
    return (
      <div className="banner banner-stale" role="alert" data-testid="conn-banner">
        The server refused the last change of what this page follows ({view.refusal}); the rest is live.
      </div>
    );
  }
  if (view.conn === "live") return null;
  if (view.conn === "signed-out") {
    return (
      <div className="banner banner-refused" role="alert" data-testid="conn-banner">
        Your sign-in has ended (the token expired or was refused): values below are frozen.{" "}
        <button type="button" className="banner-action" onClick={() => location.reload()}>
          Sign in again
        </button>
      </div>
    );
  }
  if (view.conn === "refused") {
    return (
      <div className="banner banner-refused" role="alert" data-testid="conn-banner">
        The server refused the live feed ({view.lastError ?? "no reason given"}): values below are frozen.{" "}
        <button type="button" className="banner-action" onClick={onRetry}>
          Try again
        </button>
      </div>
    );
  }
  let text: string;
  if (view.conn === "disconnected") {
    const wait = view.retryAt ? Math.max(0, Math.ceil((view.retryAt - view.nowMs) / 1000)) : null;
    text = `Disconnected from the live feed — values below are frozen and may be out of date. ${
      wait != null && wait > 0 ? `Reconnecting in ${wait} s` : "Reconnecting"
    } (attempt ${view.attempt}).`;
  } else if (view.conn === "stale") {
    text = view.resnapshots > 0 && view.lastError?.startsWith("gap")
      ? "Resynchronising: a fill was missed, fetching a fresh snapshot…"
      : "The feed has gone quiet — values may be out of date.";
  } else {
    text = apiError && view.connections === 0 ? `Connecting… (${apiError})` : "Connecting to the live feed…";
  }
  return (
    <div className={`banner banner-${view.conn}`} role="alert" data-testid="conn-banner">
      {text}
      {view.lastError && view.conn === "disconnected" && <span className="muted"> Last error: {view.lastError}</span>}
    </div>
  );
}

export default function Dashboard({ initial, initialFills, catalog, wsUrl, serverNow, apiError, signedIn = false }: DashboardProps) {
  const [blotter] = useState(() => new BlotterFeed(initialFills ?? null, { publishEveryMs: VIEW_EVERY_MS }));
  // The socket's first subscribe already names the stored watchlist (not `*` then a change).
  const [firstWatch] = useState(() => storedActiveSymbols(catalog.map((c) => c.symbol)));
  // `?repaint=frame` repaints on every frame instead, for `make bench-page`'s side-by-side row.
  const [viewEvery] = useState(() =>
    typeof location !== "undefined" && new URLSearchParams(location.search).get("repaint") === "frame" ? 0 : VIEW_EVERY_MS,
  );
  const { view, feed } = useLiveFeed({
    url: wsUrl,
    initial,
    initialNowMs: serverNow,
    recover: blotter.recoverFrom,
    instruments: firstWatch,
    publishEveryMs: viewEvery,
    // No more states per key than the screen repaints (5 a second): the server resamples.
    maxRate: viewEvery > 0 ? 1000 / viewEvery : undefined,
    // The sign-in ended: reload (once in 30 s), through the sign-in proxy again.
    onSignedOut: () => reloadForSignIn(),
    checkSignedIn: signedIn ? () => credentialAccepted() : undefined,
  });
  useEffect(() => {
    blotter.attach(feed);
    return () => blotter.detach();
  }, [blotter, feed]);
  const data = view.data;
  const catalogBySymbol = useMemo(() => Object.fromEntries(catalog.map((c) => [c.symbol, c])), [catalog]);
  const catalogSymbols = useMemo(() => catalog.map((c) => c.symbol), [catalog]);
  const [lists, updateLists] = useWatchlists(catalogSymbols);
  const watched = useMemo(() => (lists ? activeSymbols(lists) : null), [lists]);
  const sort = lists?.sort ?? null;
  // The market watch shows the active watchlist (all instruments until the browser's lists are
  // read), in the list's order or sorted by a column.
  const rows = useMemo(() => (watched ? arrange(data.instruments, watched, sort) : data.instruments), [data.instruments, watched, sort]);
  const [chosen, setChosen] = useState<string | null>(null);
  const selected = chosen ?? (rows.find((s) => s.symbol === "ESZ6") ?? rows[0])?.symbol ?? null;
  const onSelect = useCallback((symbol: string) => setChosen(symbol), []);
  // The socket follows what is on screen: the watchlist and the charted instrument.
  useEffect(() => {
    if (!watched) return;
    feed.setInstruments(selected && !watched.includes(selected) ? [...watched, selected] : watched);
  }, [feed, watched, selected]);
  const onSort = useCallback((column: SortColumn) => updateLists((w) => ({ ...w, sort: toggleSort(w.sort, column) })), [updateLists]);
  const onRemove = useCallback((symbol: string) => updateLists((w) => removeSymbol(w, symbol)), [updateLists]);
  const onRetry = useCallback(() => feed.retry(), [feed]);
  const connected = view.conn === "live" || view.conn === "stale";
  const selectedState = selected ? data.instruments.find((s) => s.symbol === selected) : undefined;
  const pnlAccounts = useMemo(() => [...new Set(data.positions.map((p) => p.account))].sort(), [data.positions]);
  const totalVolume = rows.reduce((n, s) => n + s.volume, 0);

  return (
    <div
      className={`app dash conn-${view.conn}`}
      data-conn={view.conn}
      data-resnapshots={view.resnapshots}
      data-connections={view.connections}
    >
      <Header page="dashboard" conn={view.conn} delayMs={view.delayMs} hopsMs={view.hopsMs} nowMs={view.nowMs} />
      <Banner view={view} apiError={apiError} onRetry={onRetry} />
      <main className="layout">
        <section className="panel panel-watch" aria-labelledby="h-watch">
          <div className="panel-head">
            <h2 id="h-watch">Market watch</h2>
            <span className="panel-meta num">
              {rows.length} instruments · vol {fmtInt(totalVolume)}
            </span>
          </div>
          {lists && (
            <WatchlistBar
              lists={lists}
              catalog={catalog}
              onActivate={(name) => updateLists((w) => setActive(w, name))}
              onCreate={(name) => updateLists((w) => createList(w, name))}
              onDeleteActive={() => updateLists(deleteActiveList)}
              onAdd={(symbol) => updateLists((w) => addSymbol(w, symbol))}
            />
          )}
          <PanelBoundary name="market watch">
            <MarketWatch
              instruments={rows}
              sparks={data.sparks}
              ticks={data.ticks}
              catalog={catalogBySymbol}
              selected={selected}
              onSelect={onSelect}
              nowMs={view.nowMs}
              connected={connected}
              staleMs={INSTRUMENT_STALE_MS}
              sort={lists ? sort : null}
              onSort={lists ? onSort : undefined}
              onRemove={lists ? onRemove : undefined}
            />
          </PanelBoundary>
        </section>
        <section className="panel panel-chart" aria-label="Candle chart">
          <PanelBoundary name="chart">
            <CandleChart feed={feed} symbol={selected} info={selected ? catalogBySymbol[selected] : undefined} latest={data.candles} />
          </PanelBoundary>
        </section>
        <section className="panel panel-positions" aria-labelledby="h-pos">
          <div className="panel-head">
            <h2 id="h-pos">Positions</h2>
            <span className="panel-meta">P&amp;L by average cost · marked to mid</span>
          </div>
          <PanelBoundary name="positions">
            <Positions positions={data.positions} accounts={data.accounts} catalog={catalogBySymbol} />
          </PanelBoundary>
        </section>
        <section className="panel panel-fills" aria-labelledby="h-fills">
          <div className="panel-head">
            <h2 id="h-fills">Fills</h2>
            <span className="panel-meta">today, newest first</span>
          </div>
          <PanelBoundary name="fills">
            <Fills blotter={blotter} catalog={catalogBySymbol} />
          </PanelBoundary>
        </section>
        <section className="panel panel-detail" aria-label="Instrument detail">
          <PanelBoundary name="instrument detail">
            <InstrumentDetail
              feed={feed}
              symbol={selected}
              state={selectedState}
              info={selected ? catalogBySymbol[selected] : undefined}
            />
          </PanelBoundary>
        </section>
        <section className="panel panel-pnl" aria-label="P&amp;L over time">
          <PanelBoundary name="P&L chart">
            <PnlChart feed={feed} accounts={pnlAccounts} />
          </PanelBoundary>
        </section>
      </main>
    </div>
  );
}
