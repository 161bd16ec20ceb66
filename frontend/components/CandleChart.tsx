"use client";
// Candles of the selected instrument: history from GET /api/candles, then every candle update
// from the live feed, applied to the chart directly (lightweight-charts batches its own drawing).
// The bars are kept in a CandleSeries (lib/candleSeries.ts): merged by seq, bounded, and read
// again with `/api/candles?since=` after every snapshot (reconnects) and when the feed skipped
// states that may have been the final state of an earlier bar.
//
// Test hook: with `debug` in the page's query string (e.g. `/?debug`), the chart publishes
// `window.__ttpulseChart` = { symbol, interval, series, fetches(), pending(), bars() }, where bars() are
// the bars the chart itself holds (time in s, OHLC, volume), for the end-to-end test
// (e2e/chart.e2e.test.mjs). Without `debug`, nothing is published.

import { useEffect, useRef, useState } from "react";
import type { CandlestickData, HistogramData, IChartApi, ISeriesApi, UTCTimestamp } from "lightweight-charts";
import type { LiveFeed } from "@/lib/liveFeed";
import type { Candle, Instrument, Interval } from "@/lib/types";
import { decimalsOf } from "@/lib/decimal";
import { CandleSeries, type Change, type Refetch } from "@/lib/candleSeries";
import { candleKey } from "@/lib/feedStore";
import { createFrameConflator } from "@/lib/conflate";
import { chartOptions } from "@/lib/chartTheme";
import { DASH, fmtInt, fmtPrice } from "@/lib/format";
import { IntervalSwitch } from "./IntervalSwitch";

/** The chart draws its changes at most this often (as the rest of the screen, VIEW_EVERY_MS). */
const DRAW_EVERY_MS = 200;
const UP = "#3fb950";
const DOWN = "#f85149";
/** Refetches that found the database still behind are retried after 250 ms, 500 ms, ... */
const RETRY_MS = 250;
const MAX_RETRIES = 5;

/** One bar as the chart holds it (the debug hook's view). */
export interface ChartBar {
  time: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number | null;
}

export interface ChartDebug {
  symbol: string;
  interval: Interval;
  /** How many times the chart has (re)started a series (a new symbol or interval, a remount). */
  series: number;
  /** /api/candles requests made for this (symbol, interval) so far. */
  fetches: () => number;
  /** What the series still has to read again, if anything. */
  pending: () => Refetch | null;
  bars: () => ChartBar[];
}

declare global {
  interface Window {
    __ttpulseChart?: ChartDebug;
  }
}

/** Series started so far on this page (the debug hook's `series`). */
let seriesStarted = 0;

function debugEnabled(): boolean {
  return typeof window !== "undefined" && new URLSearchParams(window.location.search).has("debug");
}

/** The earlier of two `since`s; null (the latest page) wins over any. */
function earliest(a: number | null, b: number | null): number | null {
  return a === null || b === null ? null : Math.min(a, b);
}

export interface CandleChartProps {
  feed: LiveFeed;
  symbol: string | null;
  info: Instrument | undefined;
  /** The latest candle per "SYMBOL:interval" from the feed (for the legend). */
  latest: Record<string, Candle>;
}

interface Series {
  chart: IChartApi;
  candles: ISeriesApi<"Candlestick">;
  volume: ISeriesApi<"Histogram">;
}

function toBar(c: Candle): CandlestickData<UTCTimestamp> {
  return {
    time: Math.floor(c.start / 1_000_000) as UTCTimestamp,
    open: parseFloat(c.open),
    high: parseFloat(c.high),
    low: parseFloat(c.low),
    close: parseFloat(c.close),
  };
}

function toVolume(c: Candle): HistogramData<UTCTimestamp> {
  const up = parseFloat(c.close) >= parseFloat(c.open);
  return {
    time: Math.floor(c.start / 1_000_000) as UTCTimestamp,
    value: c.volume,
    color: up ? "rgba(63,185,80,0.45)" : "rgba(248,81,73,0.45)",
  };
}

function chartBars(s: Series): ChartBar[] {
  const volumes = new Map<number, number>();
  for (const v of s.volume.data()) if ("value" in v) volumes.set(v.time as number, v.value);
  const out: ChartBar[] = [];
  for (const b of s.candles.data()) {
    if (!("open" in b)) continue;
    const time = b.time as number;
    out.push({ time, open: b.open, high: b.high, low: b.low, close: b.close, volume: volumes.get(time) ?? null });
  }
  return out;
}

export default function CandleChart({ feed, symbol, info, latest }: CandleChartProps) {
  const [interval, setChartInterval] = useState<Interval>("1s");
  const [status, setStatus] = useState<string>("loading");
  const containerRef = useRef<HTMLDivElement>(null);
  const seriesRef = useRef<Series | null>(null);
  const [ready, setReady] = useState(false);
  const dp = decimalsOf(info?.tick_size);

  // Create the chart once, on the client.
  useEffect(() => {
    let disposed = false;
    let chart: IChartApi | null = null;
    import("lightweight-charts").then(({ createChart, CandlestickSeries, HistogramSeries, ColorType, CrosshairMode }) => {
      if (disposed || !containerRef.current) return;
      chart = createChart(containerRef.current, chartOptions({ ColorType, CrosshairMode }, { timeScale: { barSpacing: 8, minBarSpacing: 2 } }));
      const candles = chart.addSeries(CandlestickSeries, {
        upColor: UP,
        downColor: DOWN,
        borderUpColor: UP,
        borderDownColor: DOWN,
        wickUpColor: UP,
        wickDownColor: DOWN,
      });
      const volume = chart.addSeries(HistogramSeries, { priceScaleId: "", priceFormat: { type: "volume" }, lastValueVisible: false, priceLineVisible: false });
      volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
      candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.25 } });
      seriesRef.current = { chart, candles, volume };
      setReady(true);
    });
    return () => {
      disposed = true;
      seriesRef.current = null;
      chart?.remove();
    };
  }, []);

  // Price format follows the instrument's tick size.
  useEffect(() => {
    const s = seriesRef.current;
    if (!ready || !s || !info) return;
    s.candles.applyOptions({
      priceFormat: { type: "price", precision: dp, minMove: parseFloat(info.tick_size) || 0.01 },
    });
  }, [ready, info, dp]);

  // History for (symbol, interval), live updates, and refetches of what may be stale. The bars
  // live in a CandleSeries (lib/candleSeries.ts); the chart mirrors it: `update` when only the
  // newest bar changed, `setData` when an older bar changed or bars were dropped.
  useEffect(() => {
    const s = seriesRef.current;
    if (!ready || !s || !symbol) return;
    const series = new CandleSeries(symbol, interval);
    seriesStarted += 1;
    const key = candleKey(symbol, interval);
    let cancelled = false;
    let loaded = false; // the first page has been answered (or failed)
    let inFlight = false;
    let queued: Refetch | null = null; // at most one more fetch waits, its `since` the earliest asked
    let retries = 0; // refetches in a row that left bars stale (the database was behind)
    let retryTimer: ReturnType<typeof setTimeout> | null = null;
    let fetches = 0;
    let hasBars = false; // "ok" was shown

    // Changes are drawn at most every DRAW_EVERY_MS: the bars changed since the last draw are
    // updated in order (the previous newest one may have got its final state, then a new one
    // started), or the whole series is set when an older bar changed or bars were trimmed.
    let pending: Change = "none";
    let pendingFrom = Number.POSITIVE_INFINITY;
    const draw = () => {
      if (cancelled) return;
      if (pending === "all") {
        const bars = series.bars();
        s.candles.setData(bars.map(toBar));
        s.volume.setData(bars.map(toVolume));
      } else if (pending === "last") {
        for (const bar of series.bars().filter((b) => b.start >= pendingFrom)) {
          s.candles.update(toBar(bar));
          s.volume.update(toVolume(bar));
        }
      }
      pending = "none";
      pendingFrom = Number.POSITIVE_INFINITY;
      if (loaded && !hasBars && series.size) {
        hasBars = true;
        setStatus("ok");
      }
    };
    const drawer = createFrameConflator(draw, undefined, undefined, DRAW_EVERY_MS);
    const render = (change: Change) => {
      if (change === "none") return;
      if (change === "all") pending = "all";
      else if (pending !== "all") {
        pending = "last";
        pendingFrom = Math.min(pendingFrom, series.last()!.start);
      }
      drawer.schedule();
    };

    const fetchPage = (since: number | null) => {
      inFlight = true;
      fetches += 1;
      const limit = series.maxBars;
      const page = { since, limit };
      const url =
        `/api/candles?symbol=${encodeURIComponent(symbol)}&interval=${interval}&limit=${limit}` +
        (since === null ? "" : `&since=${since}`);
      fetch(url, { cache: "no-store" })
        .then((res) => (res.ok ? (res.json() as Promise<Candle[]>) : Promise.reject(new Error(`HTTP ${res.status}`))))
        .then((rows) => {
          if (cancelled) return; // the symbol or interval changed meanwhile: not ours any more
          const first = !loaded;
          loaded = true;
          const result = series.mergeHistory(rows, page);
          render(result.change);
          if (first) {
            // A medium history fills the width; a long one (or a very short one) shows its
            // newest bars at the default spacing.
            const n = series.size;
            if (n >= 25 && n < 80) s.chart.timeScale().fitContent();
            else s.chart.timeScale().scrollToRealTime();
            hasBars = n > 0;
            setStatus(n ? "ok" : "empty");
          }
          if (result.refetch) {
            // Still stale: the database had not stored the skipped states yet (or the page
            // stopped short). Try again, a little later each time, a few times.
            if (retries < MAX_RETRIES) {
              const delay = RETRY_MS * 2 ** retries;
              retries += 1;
              const again = result.refetch;
              if (retryTimer) clearTimeout(retryTimer);
              retryTimer = setTimeout(() => {
                retryTimer = null;
                request(again);
              }, delay);
            }
          } else {
            retries = 0;
          }
        })
        .catch((e: unknown) => {
          if (cancelled) return;
          if (!loaded) {
            loaded = true;
            setStatus(`error: ${e instanceof Error ? e.message : String(e)}`);
          }
          // A failed refetch leaves the chart as it was; the next resync or jump asks again.
        })
        .finally(() => {
          if (cancelled) return;
          inFlight = false;
          const next = queued;
          queued = null;
          if (next) request(next);
        });
    };

    // Coalesced: one fetch in flight, one more queued (asking from the earliest `since`).
    const request = (r: Refetch) => {
      if (cancelled) return;
      if (inFlight) {
        queued = queued === null ? r : { since: earliest(queued.since, r.since) };
        return;
      }
      fetchPage(r.since);
    };

    const offCandle = feed.onCandle((c) => {
      if (c.symbol !== symbol || c.interval !== interval) return;
      const result = series.applyLive(c);
      render(result.change);
      if (result.refetch) {
        retries = 0;
        request(result.refetch);
      }
    });
    // After every snapshot (reconnect, gap, unasked): apply its candle of this series and read
    // again what may have been missed while the feed was not live.
    const offResync = feed.onResync(() => {
      const result = series.resync(feed.store.view().candles[key]);
      render(result.change);
      if (!loaded) return; // the first page is still coming; its merge checks the seqs
      retries = 0;
      if (result.refetch) request(result.refetch);
    });

    s.candles.setData([]);
    s.volume.setData([]);
    setStatus("loading");
    request({ since: null });

    if (debugEnabled()) {
      window.__ttpulseChart = {
        symbol,
        interval,
        series: seriesStarted,
        fetches: () => fetches,
        pending: () => series.pending,
        bars: () => chartBars(s),
      };
    }
    return () => {
      cancelled = true;
      drawer.cancel();
      if (retryTimer) clearTimeout(retryTimer);
      offCandle();
      offResync();
      if (debugEnabled() && window.__ttpulseChart?.symbol === symbol && window.__ttpulseChart.interval === interval) {
        delete window.__ttpulseChart;
      }
    };
  }, [ready, feed, symbol, interval]);

  const current = symbol ? latest[`${symbol}:${interval}`] : undefined;

  return (
    <div className="chart-wrap">
      <div className="chart-head">
        <div className="chart-title">
          <span className="sym-code" data-testid="chart-symbol">
            {symbol ?? DASH}
          </span>
          <span className="muted">{info?.description ?? ""}</span>
        </div>
        <IntervalSwitch className="seg" label="Candle interval" value={interval} onChange={setChartInterval} />
      </div>
      <div className="chart-body">
        <div ref={containerRef} className="chart-canvas" data-testid="candle-chart" />
        <div className="chart-legend num" aria-label="Current candle">
          <span>O <b>{fmtPrice(current?.open, dp)}</b></span>
          <span>H <b>{fmtPrice(current?.high, dp)}</b></span>
          <span>L <b>{fmtPrice(current?.low, dp)}</b></span>
          <span>C <b>{fmtPrice(current?.close, dp)}</b></span>
          <span>V <b>{current ? fmtInt(current.volume) : DASH}</b></span>
        </div>
        {!symbol ? (
          <div className="chart-status">No instrument selected.</div>
        ) : status !== "ok" && (
          <div className="chart-status">
            {status === "loading" ? "Loading candles…" : status === "empty" ? "No candles yet." : status}
          </div>
        )}
      </div>
    </div>
  );
}
