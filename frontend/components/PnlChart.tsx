"use client";
// An account's P&L over time: total P&L as a baseline chart (green above zero, red below), with
// the latest realized / unrealized / total in the legend (exact decimals, never floats).
//
// History comes from GET /api/pnl (the latest page on mount and on every account or interval
// change; after every snapshot, e.g. a reconnect, the rows from the newest bucket held on, so
// that a gap is filled: at most one request in flight, one more queued). Live samples come from
// `feed.onPnl`. The points are kept in a PnlSeries (lib/pnlSeries.ts: merged by seq, bounded)
// and the chart mirrors it at most once per animation frame: `update` when only the newest
// points changed, `setData` when an older one did.
//
// For end-to-end tests: the root has data-testid="pnl-chart", data-account, data-interval and
// data-points (the points held); the legend's total has data-testid="pnl-total".

import { useCallback, useEffect, useRef, useState } from "react";
import type { BaselineData, IChartApi, ISeriesApi, UTCTimestamp, WhitespaceData } from "lightweight-charts";
import type { LiveFeed } from "@/lib/liveFeed";
import type { Interval, Micros, PnlPoint } from "@/lib/types";
import { createFrameConflator } from "@/lib/conflate";
import { chartOptions } from "@/lib/chartTheme";
import { DASH } from "@/lib/format";
import { PnlSeries, decSign, fmtPnl, toChartData, toChartDatum, type PnlChartDatum } from "@/lib/pnlSeries";
import { INTERVAL_LABEL, IntervalSwitch } from "./IntervalSwitch";

export interface PnlChartProps {
  feed: LiveFeed;
  /** The accounts the user sees (from the positions), sorted. */
  accounts: string[];
}

interface ChartHandle {
  chart: IChartApi;
  line: ISeriesApi<"Baseline">;
}

/** What the page shows of the series, published at most once per frame. */
interface Shown {
  points: number;
  last: PnlPoint | null;
}

/** The earlier of two `from`s; null (the latest page) wins over any. */
function earliest(a: Micros | null, b: Micros | null): Micros | null {
  return a === null || b === null ? null : Math.min(a, b);
}

/** "HTTP 403 forbidden: the token does not grant ACC9", from the API's error body if any. */
async function httpError(res: Response): Promise<string> {
  let detail = res.statusText || "";
  try {
    const text = await res.text();
    try {
      const body = JSON.parse(text) as { error?: unknown; message?: unknown };
      const parts = [body.error, body.message].filter((x) => typeof x === "string" && x !== "");
      if (parts.length) detail = parts.join(": ");
      else if (text.trim()) detail = text.trim().slice(0, 200);
    } catch {
      if (text.trim()) detail = text.trim().slice(0, 200);
    }
  } catch {
    /* no body */
  }
  return `HTTP ${res.status}${detail ? ` ${detail}` : ""}`;
}

/** A datum as lightweight-charts types it (the time is Unix seconds). */
function asChart(d: PnlChartDatum): BaselineData<UTCTimestamp> | WhitespaceData<UTCTimestamp> {
  return { ...d, time: d.time as UTCTimestamp };
}

function signClass(text: unknown): string {
  const s = decSign(text);
  return s > 0 ? "up" : s < 0 ? "down" : "";
}

export default function PnlChart({ feed, accounts }: PnlChartProps) {
  const [chosen, setChosen] = useState<string | null>(null);
  const account = chosen !== null && accounts.includes(chosen) ? chosen : (accounts[0] ?? null);
  const [interval, setPnlInterval] = useState<Interval>("1s");

  const containerRef = useRef<HTMLDivElement>(null);
  const chartRef = useRef<ChartHandle | null>(null);
  const [chartReady, setChartReady] = useState(false);
  const [chartError, setChartError] = useState<string | null>(null);

  const [shown, setShown] = useState<Shown>({ points: 0, last: null });
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState<string | null>(null);
  /** The current (account, interval)'s redraw scheduler and refetch, for the effects below. */
  const scheduleRef = useRef<(() => void) | null>(null);
  const refetchRef = useRef<(() => void) | null>(null);
  const seriesRef = useRef<PnlSeries | null>(null);

  // Create the chart once, on the client. Without it (it failed to load) the legend still works.
  useEffect(() => {
    let disposed = false;
    let chart: IChartApi | null = null;
    import("lightweight-charts")
      .then(({ createChart, BaselineSeries, ColorType, CrosshairMode }) => {
        if (disposed || !containerRef.current) return;
        chart = createChart(
          containerRef.current,
          chartOptions({ ColorType, CrosshairMode }, { rightPriceScale: { scaleMargins: { top: 0.15, bottom: 0.1 } } }),
        );
        const line = chart.addSeries(BaselineSeries, {
          baseValue: { type: "price", price: 0 },
          topLineColor: "#3fb950",
          topFillColor1: "rgba(63,185,80,0.28)",
          topFillColor2: "rgba(63,185,80,0.04)",
          bottomLineColor: "#ff6b61",
          bottomFillColor1: "rgba(255,107,97,0.04)",
          bottomFillColor2: "rgba(255,107,97,0.28)",
          lineWidth: 2,
          priceFormat: { type: "price", precision: 2, minMove: 0.01 },
        });
        chartRef.current = { chart, line };
        setChartReady(true);
      })
      .catch((e: unknown) => {
        if (!disposed) setChartError(e instanceof Error ? e.message : String(e));
      });
    return () => {
      disposed = true;
      chartRef.current = null;
      chart?.remove();
    };
  }, []);

  // Seconds on the time axis only for 1 s buckets.
  useEffect(() => {
    if (!chartReady) return;
    chartRef.current?.chart.applyOptions({ timeScale: { secondsVisible: interval === "1s" } });
  }, [chartReady, interval]);

  // Once the chart exists, it draws whatever the series holds by then.
  useEffect(() => {
    if (!chartReady) return;
    seriesRef.current?.markUndrawn();
    scheduleRef.current?.();
  }, [chartReady]);

  // History, live samples and refills of one (account, interval).
  useEffect(() => {
    if (account === null) {
      setShown({ points: 0, last: null });
      return;
    }
    const series = new PnlSeries(account, interval);
    seriesRef.current = series;
    let cancelled = false;
    let inFlight = false;
    let queued = false;
    let queuedFrom: Micros | null = null;
    let fitted = false;

    const draw = () => {
      const handle = chartRef.current;
      if (handle && series.dirty) {
        const redraw = series.takeRedraw();
        try {
          if (redraw.kind === "all") {
            handle.line.setData(toChartData(redraw.points).map(asChart));
            if (!fitted && redraw.points.length > 0) {
              fitted = true;
              handle.chart.timeScale().fitContent();
            }
          } else if (redraw.kind === "update") {
            for (const p of redraw.points) handle.line.update(asChart(toChartDatum(p)));
          }
        } catch {
          // The chart refused an update (e.g. out of order): replace everything next frame.
          series.markUndrawn();
          conflator.schedule();
        }
      }
      const last = series.last() ?? null;
      setShown((prev) => (prev.points === series.size && prev.last === last ? prev : { points: series.size, last }));
    };
    const conflator = createFrameConflator(draw);

    const fetchPage = (from: Micros | null) => {
      inFlight = true;
      const url =
        `/api/pnl?account=${encodeURIComponent(account)}&interval=${interval}&limit=${series.maxPoints}` +
        (from === null ? "" : `&from=${from}`);
      fetch(url, { cache: "no-store" })
        .then(async (res) => {
          if (!res.ok) throw new Error(await httpError(res));
          return (await res.json()) as unknown;
        })
        .then((rows) => {
          if (cancelled) return; // the account or interval changed meanwhile: not ours any more
          if (!Array.isArray(rows)) throw new Error("the answer is not a list of P&L points");
          const result = series.mergeHistory(rows);
          if (result.change !== "none") conflator.schedule();
          setLoaded(true);
          setError(null);
        })
        .catch((e: unknown) => {
          if (cancelled) return;
          setLoaded(true);
          setError(e instanceof Error ? e.message : String(e));
        })
        .finally(() => {
          if (cancelled) return;
          inFlight = false;
          if (queued) {
            queued = false;
            const next = queuedFrom;
            queuedFrom = null;
            fetchPage(next);
          }
        });
    };

    // Coalesced: one request in flight; one more waits, from the earliest point asked for.
    const request = () => {
      if (cancelled) return;
      const from = series.refetchFrom();
      if (inFlight) {
        queuedFrom = queued ? earliest(queuedFrom, from) : from;
        queued = true;
        return;
      }
      fetchPage(from);
    };

    const offPnl = feed.onPnl((p) => {
      if (!p || p.account !== account || p.interval !== interval) return;
      if (series.applyLive(p).change !== "none") conflator.schedule();
    });
    const offResync = feed.onResync(() => request());

    scheduleRef.current = () => conflator.schedule();
    refetchRef.current = request;
    setLoaded(false);
    setError(null);
    setShown({ points: 0, last: null });
    conflator.schedule(); // clears what the chart showed of the previous series
    request();

    return () => {
      cancelled = true;
      offPnl();
      offResync();
      conflator.cancel();
      if (seriesRef.current === series) seriesRef.current = null;
      scheduleRef.current = null;
      refetchRef.current = null;
    };
  }, [feed, account, interval]);

  const retry = useCallback(() => refetchRef.current?.(), []);

  const last = shown.last;
  let overlay: string | null = null;
  if (account === null) overlay = "No accounts to chart";
  else if (shown.points === 0) {
    if (error) overlay = null; // shown as an alert below
    else if (!loaded) overlay = "Loading P&L…";
    else overlay = "No P&L samples yet";
  }

  return (
    <div
      className="pnl-wrap"
      data-testid="pnl-chart"
      data-account={account ?? ""}
      data-interval={interval}
      data-points={shown.points}
    >
      <div className="pnl-head">
        <label className="pnl-account">
          <span className="muted">Account</span>
          <select
            aria-label="P&L account"
            value={account ?? ""}
            disabled={accounts.length === 0}
            onChange={(e) => setChosen(e.target.value)}
          >
            {accounts.length === 0 && <option value="">{DASH}</option>}
            {accounts.map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </label>
        <IntervalSwitch className="pnl-seg" label="P&L interval" value={interval} onChange={setPnlInterval} />
      </div>
      <div className="pnl-body">
        <div
          ref={containerRef}
          className="pnl-canvas"
          role="img"
          aria-label={account ? `Total P&L of ${account}, ${INTERVAL_LABEL[interval]} buckets` : "Total P&L"}
        />
        <div className="pnl-legend num" aria-label="Latest P&L">
          <span>
            Realized <b className={signClass(last?.realized)} data-testid="pnl-realized">{last ? fmtPnl(last.realized) : DASH}</b>
          </span>
          <span>
            Unrealized <b className={signClass(last?.unrealized)} data-testid="pnl-unrealized">{last ? fmtPnl(last.unrealized) : DASH}</b>
          </span>
          <span>
            Total <b className={signClass(last?.total)} data-testid="pnl-total">{last ? fmtPnl(last.total) : DASH}</b>
          </span>
        </div>
        {overlay && (
          <div className="pnl-status" data-testid="pnl-status">
            {overlay}
          </div>
        )}
        {error && (
          <div className="pnl-error" role="alert" data-testid="pnl-error">
            {shown.points > 0 ? "Could not refresh the P&L history" : "Could not load the P&L history"}: {error}{" "}
            <button type="button" className="pnl-retry" onClick={retry}>
              Retry
            </button>
          </div>
        )}
        {chartError && shown.points > 0 && (
          <div className="pnl-error" role="alert">
            The chart could not be drawn: {chartError}
          </div>
        )}
      </div>
    </div>
  );
}
