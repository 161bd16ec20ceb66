"use client";
// The selected instrument in detail: the top of book with sizes, the session (last, change,
// open, high, low, VWAP, volume) and time and sales, its recent prints newest first, live.
//
// The prints: the history from GET /api/trades, then every print the feed follows for this
// instrument (`feed.setTrades`), merged and bounded by TimeAndSales (lib/timeAndSales.ts). The
// history is read again after every snapshot (a reconnect, a gap) and whenever the prints may
// have a hole (a seq that jumps: the server skipped prints for a slow client; the seam between
// the first page and the stream). The list re-renders at most once per animation frame, and
// each row only when it is new.

import { memo, useEffect, useState } from "react";
import type { LiveFeed } from "@/lib/liveFeed";
import type { Instrument, InstrumentState, TradePrint } from "@/lib/types";
import { createFrameConflator } from "@/lib/conflate";
import { signDec } from "@/lib/decimal";
import { TimeAndSales, tradesUrl } from "@/lib/timeAndSales";
import { DASH, fmtAvgPrice, fmtInstrumentChange, fmtInstrumentPrice, fmtInt, fmtPct, fmtTime } from "@/lib/format";
import { EmptyRow } from "./EmptyRow";

/** Refetches that left a hole are retried after 250 ms, 500 ms, ... (failed ones too). */
const RETRY_MS = 250;
const MAX_RETRIES = 5;

export interface InstrumentDetailProps {
  feed: LiveFeed;
  /** The selected instrument. */
  symbol: string | null;
  /** Its live state (re-rendered at most once per frame). */
  state: InstrumentState | undefined;
  /** Its catalog entry (tick_size, price_format, description). */
  info: Instrument | undefined;
}

/**
 * `loading`: the first page is on its way; `incomplete`: prints may be missing and the retries
 * gave up (the next snapshot reads them again); `error`: the last read failed.
 */
type TasStatus = { kind: "loading" } | { kind: "ok" } | { kind: "incomplete" } | { kind: "error"; message: string };

interface TasData {
  symbol: string | null;
  prints: readonly TradePrint[];
  status: TasStatus;
}

const NO_PRINTS: readonly TradePrint[] = [];
const LOADING: TasStatus = { kind: "loading" };
const OK: TasStatus = { kind: "ok" };
const INCOMPLETE: TasStatus = { kind: "incomplete" };

/** The instrument's prints: history, live prints, refetches; published once per frame. */
function useTimeAndSales(feed: LiveFeed, symbol: string | null): TasData {
  const [data, setData] = useState<TasData>({ symbol: null, prints: NO_PRINTS, status: LOADING });

  // What the feed follows: this instrument's prints, none once unmounted. (Set in one call on a
  // change of symbol: every change of subscription costs the feed a snapshot.)
  useEffect(() => {
    feed.setTrades(symbol ? [symbol] : []);
  }, [feed, symbol]);
  useEffect(() => () => feed.setTrades([]), [feed]);

  useEffect(() => {
    if (!symbol) return;
    const tas = new TimeAndSales(symbol);
    let cancelled = false;
    let inFlight = false;
    let queued = false; // one more read waits behind the one in flight
    let retries = 0;
    let retryTimer: ReturnType<typeof setTimeout> | null = null;
    let status: TasStatus = LOADING;
    // Prints are shown at most 5 times a second, like the rest of the screen.
    const frame = createFrameConflator(
      () => {
        if (!cancelled) setData({ symbol, prints: tas.prints(), status });
      },
      undefined,
      undefined,
      200,
    );

    const clearRetry = () => {
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = null;
    };
    const retryLater = () => {
      if (retries >= MAX_RETRIES) {
        if (status.kind !== "error") status = INCOMPLETE;
        return;
      }
      const delay = RETRY_MS * 2 ** retries;
      retries += 1;
      clearRetry();
      retryTimer = setTimeout(() => {
        retryTimer = null;
        request();
      }, delay);
    };
    const fetchPage = () => {
      inFlight = true;
      fetch(tradesUrl(symbol), { cache: "no-store" })
        .then((res) => (res.ok ? (res.json() as Promise<TradePrint[]>) : Promise.reject(new Error(`HTTP ${res.status}`))))
        .then((rows) => {
          if (cancelled) return; // another instrument meanwhile
          const result = tas.mergeHistory(rows);
          if (result.refetch) {
            // Still a hole (the database had not stored the newest prints yet): again, later.
            status = OK;
            retryLater();
          } else {
            retries = 0;
            status = OK;
          }
          frame.schedule();
        })
        .catch((e: unknown) => {
          if (cancelled) return;
          status = { kind: "error", message: e instanceof Error ? e.message : String(e) };
          frame.schedule();
          retryLater();
        })
        .finally(() => {
          if (cancelled) return;
          inFlight = false;
          if (queued) {
            queued = false;
            fetchPage();
          }
        });
    };
    // Coalesced: one read in flight, at most one more queued behind it.
    const request = () => {
      if (cancelled) return;
      if (inFlight) {
        queued = true;
        return;
      }
      clearRetry();
      fetchPage();
    };

    const offTrade = feed.onTrade((print) => {
      if (print.symbol !== symbol) return;
      const result = tas.applyLive(print);
      if (result.changed) frame.schedule();
      if (result.refetch) {
        retries = 0;
        request();
      }
    });
    // After every snapshot (a reconnect, a gap, a change of subscription): prints may have gone
    // by while the feed was not live.
    const offResync = feed.onResync(() => {
      retries = 0;
      request();
    });
    request();

    return () => {
      cancelled = true;
      frame.cancel();
      clearRetry();
      offTrade();
      offResync();
    };
  }, [feed, symbol]);

  return data.symbol === symbol ? data : { symbol, prints: NO_PRINTS, status: LOADING };
}

function sign(text: string | null | undefined): -1 | 0 | 1 {
  try {
    return signDec(text);
  } catch {
    return 0;
  }
}

const dirClass = (text: string | null | undefined) => ["down", "", "up"][sign(text) + 1];

/** The top of book and the session's numbers. Re-rendered with the state (once per frame). */
const Quote = memo(function Quote({
  symbol,
  state,
  info,
}: {
  symbol: string;
  state: InstrumentState | undefined;
  info: Instrument | undefined;
}) {
  const s = state;
  // Sizes of the side shown: none without a price (and an older server sends none).
  const bidQty = s?.bid == null ? null : s.bid_qty;
  const askQty = s?.ask == null ? null : s.ask_qty;
  const change = s?.change ?? null;
  return (
    <div className="detail-quote live-values">
      <table className="detail-book" aria-label={`${symbol} bid and ask with sizes`}>
        <thead>
          <tr>
            <th scope="col" className="num">Bid size</th>
            <th scope="col" className="num">Bid</th>
            <th scope="col" className="num">Ask</th>
            <th scope="col" className="num">Ask size</th>
          </tr>
        </thead>
        <tbody>
          <tr>
            <td className="num detail-size" data-field="bid_qty">
              {fmtInt(bidQty)}
            </td>
            <td className="num detail-bid" data-field="bid">
              {fmtInstrumentPrice(s?.bid, info)}
            </td>
            <td className="num detail-ask" data-field="ask">
              {fmtInstrumentPrice(s?.ask, info)}
            </td>
            <td className="num detail-size" data-field="ask_qty">
              {fmtInt(askQty)}
            </td>
          </tr>
        </tbody>
      </table>
      <table className="detail-stats" aria-label={`${symbol} session`}>
        <tbody>
          <tr>
            <th scope="row">Last</th>
            <td className="num detail-last" data-field="last">
              {fmtInstrumentPrice(s?.last, info)}
            </td>
            <th scope="row">Change</th>
            <td className={`num ${dirClass(change)}`} data-field="change">
              {fmtInstrumentChange(change, info)}
              <span className="detail-pct" data-field="change_pct">
                {change == null ? "" : ` ${fmtPct(s?.change_pct)}`}
              </span>
            </td>
          </tr>
          {(
            [
              ["Open", "open", fmtInstrumentPrice(s?.open, info), "VWAP", "vwap", fmtAvgPrice(s?.vwap, info)],
              ["High", "high", fmtInstrumentPrice(s?.high, info), "Volume", "volume", fmtInt(s?.volume)],
              ["Low", "low", fmtInstrumentPrice(s?.low, info), "Trades", "trades", fmtInt(s?.trades)],
            ] as const
          ).map(([label, field, value, label2, field2, value2]) => (
            <tr key={field}>
              <th scope="row">{label}</th>
              <td className="num" data-field={field}>
                {value}
              </td>
              <th scope="row">{label2}</th>
              <td className="num" data-field={field2}>
                {value2}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
});

/** One print. Memoized: a row renders once, when it arrives (or the catalog entry changes). */
const PrintRow = memo(function PrintRow({ print, info }: { print: TradePrint; info: Instrument | undefined }) {
  const side = print.aggressor === "buy" || print.aggressor === "sell" ? print.aggressor : null;
  return (
    <tr data-print={print.event_id}>
      <td className="num muted" data-field="ts">
        {fmtTime(print.ts)}
      </td>
      <td className={`num tas-price${side ? ` tas-${side}` : ""}`} data-field="price">
        {fmtInstrumentPrice(print.price, info)}
      </td>
      <td className="num" data-field="qty">
        {fmtInt(print.qty)}
      </td>
      <td data-field="aggressor">
        {side ? <span className={`side side-${side}`}>{side === "buy" ? "BUY" : "SELL"}</span> : DASH}
      </td>
    </tr>
  );
});

/** Time and sales. Re-rendered only when the prints (once per frame at most) or the status change. */
const Prints = memo(function Prints({
  symbol,
  prints,
  status,
  info,
}: {
  symbol: string;
  prints: readonly TradePrint[];
  status: TasStatus;
  info: Instrument | undefined;
}) {
  return (
    <div className="table-scroll tas-scroll">
      <div className="tas-status" role="status" aria-live="polite" data-testid="tas-status">
        {status.kind === "error" ? (
          <span className="error">Could not read the prints ({status.message}) — retrying</span>
        ) : status.kind === "incomplete" ? (
          <span className="muted">Some earlier prints may be missing: they are read again on the next reconnect.</span>
        ) : null}
      </div>
      <table
        className="grid-table tas"
        aria-label={`Time and sales, ${symbol}`}
        data-testid="time-and-sales"
        data-rows={prints.length}
      >
        <thead>
          <tr>
            <th scope="col">Time (UTC)</th>
            <th scope="col" className="num">Price</th>
            <th scope="col" className="num">Qty</th>
            <th scope="col">Aggressor</th>
          </tr>
        </thead>
        <tbody className="live-values">
          {prints.length === 0 && (
            <EmptyRow columns={4}>
              {status.kind === "loading" ? "Loading prints…" : "No prints yet: they appear here as they trade."}
            </EmptyRow>
          )}
          {prints.map((p) => (
            <PrintRow key={p.event_id} print={p} info={info} />
          ))}
        </tbody>
      </table>
    </div>
  );
});

function InstrumentDetail({ feed, symbol, state, info }: InstrumentDetailProps) {
  const tas = useTimeAndSales(feed, symbol);
  const current = state && state.symbol === symbol ? state : undefined;
  return (
    <div className="detail" data-testid="instrument-detail" data-symbol={symbol ?? ""}>
      <div className="panel-head detail-head">
        <h2 id="h-detail">
          Detail{symbol ? " " : ""}
          {symbol && <span className="sym-code detail-sym">{symbol}</span>}
        </h2>
        <span className="panel-meta">{info?.description ?? ""}</span>
      </div>
      {symbol == null ? (
        <p className="detail-empty muted">Select an instrument to see its quote and prints.</p>
      ) : (
        <>
          <Quote symbol={symbol} state={current} info={info} />
          <Prints symbol={symbol} prints={tas.prints} status={tas.status} info={info} />
        </>
      )}
    </div>
  );
}

export default memo(InstrumentDetail);
