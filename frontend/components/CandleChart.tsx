"use client";
// Candles of the selected instrument: history from GET /api/candles, then every candle update
// from the live feed, applied to the chart directly (lightweight-charts batches its own drawing).

import { useEffect, useRef, useState } from "react";
import type { CandlestickData, HistogramData, IChartApi, ISeriesApi, UTCTimestamp } from "lightweight-charts";
import type { LiveFeed } from "@/lib/liveFeed";
import type { Candle, Instrument, Interval } from "@/lib/types";
import { decimalsOf } from "@/lib/decimal";
import { DASH, fmtInt, fmtPrice } from "@/lib/format";

const UP = "#3fb950";
const DOWN = "#f85149";
const HISTORY = 300;

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
      chart = createChart(containerRef.current, {
        autoSize: true,
        layout: {
          background: { type: ColorType.Solid, color: "transparent" },
          textColor: "#9aa7b4",
          fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, 'Liberation Mono', monospace",
          fontSize: 11,
        },
        grid: { vertLines: { color: "#1a222c" }, horzLines: { color: "#1a222c" } },
        rightPriceScale: { borderColor: "#263241" },
        timeScale: { borderColor: "#263241", timeVisible: true, secondsVisible: true, rightOffset: 3, barSpacing: 8, minBarSpacing: 2 },
        crosshair: { mode: CrosshairMode.Normal },
      });
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

  // History for (symbol, interval), then live updates.
  useEffect(() => {
    const s = seriesRef.current;
    if (!ready || !s || !symbol) return;
    let cancelled = false;
    let loaded = false;
    let lastTime = 0;
    let hasBars = false;
    const pending: Candle[] = [];
    const apply = (c: Candle) => {
      const t = Math.floor(c.start / 1_000_000);
      if (t < lastTime) return; // an older bucket: the chart only updates the newest bar
      lastTime = t;
      s.candles.update(toBar(c));
      s.volume.update(toVolume(c));
      if (!hasBars) {
        hasBars = true;
        setStatus("ok");
      }
    };
    const off = feed.onCandle((c) => {
      if (c.symbol !== symbol || c.interval !== interval) return;
      if (loaded) apply(c);
      else pending.push(c);
    });
    s.candles.setData([]);
    s.volume.setData([]);
    setStatus("loading");
    const url = `/api/candles?symbol=${encodeURIComponent(symbol)}&interval=${interval}&limit=${HISTORY}`;
    fetch(url, { cache: "no-store" })
      .then((res) => (res.ok ? (res.json() as Promise<Candle[]>) : Promise.reject(new Error(`HTTP ${res.status}`))))
      .then((history) => {
        if (cancelled) return;
        // Sorted, one bar per bucket start (the newest state wins).
        const byStart = new Map<number, Candle>();
        for (const c of history) byStart.set(c.start, c);
        const sorted = [...byStart.values()].sort((a, b) => a.start - b.start);
        s.candles.setData(sorted.map(toBar));
        s.volume.setData(sorted.map(toVolume));
        lastTime = sorted.length ? Math.floor(sorted[sorted.length - 1].start / 1_000_000) : 0;
        loaded = true;
        for (const c of pending) apply(c);
        pending.length = 0;
        // A medium history fills the width; a long one (or a very short one) shows its newest
        // bars at the default spacing.
        if (sorted.length >= 25 && sorted.length < 80) s.chart.timeScale().fitContent();
        else s.chart.timeScale().scrollToRealTime();
        hasBars = hasBars || sorted.length > 0;
        setStatus(hasBars ? "ok" : "empty");
      })
      .catch((e: unknown) => {
        if (cancelled) return;
        loaded = true;
        setStatus(`error: ${e instanceof Error ? e.message : String(e)}`);
      });
    return () => {
      cancelled = true;
      off();
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
        <div className="seg" role="group" aria-label="Candle interval">
          {(["1s", "1m"] as const).map((iv) => (
            <button
              key={iv}
              type="button"
              className={iv === interval ? "active" : ""}
              aria-pressed={iv === interval}
              onClick={() => setChartInterval(iv)}
            >
              {iv === "1s" ? "1 s" : "1 min"}
            </button>
          ))}
        </div>
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
