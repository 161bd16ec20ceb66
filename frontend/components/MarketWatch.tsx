"use client";

import { memo, useCallback, useEffect, useState } from "react";
import type { InstrumentTicks, Tick } from "@/lib/feedStore";
import { isInstrumentStale } from "@/lib/feedStore";
import type { Instrument, InstrumentState } from "@/lib/types";
import { signDec } from "@/lib/decimal";
import { fmtAvgPrice, fmtInstrumentChange, fmtInstrumentPrice, fmtInt, fmtPct } from "@/lib/format";
import type { Sort, SortColumn } from "@/lib/watchlist";
import { Sparkline } from "./Sparkline";
import { EmptyRow } from "./EmptyRow";

export interface MarketWatchProps {
  instruments: InstrumentState[];
  sparks: Record<string, number[]>;
  ticks: Record<string, InstrumentTicks>;
  catalog: Record<string, Instrument>;
  selected: string | null;
  onSelect: (symbol: string) => void;
  nowMs: number;
  /** Per-instrument stale marks are shown only while the socket is up. */
  connected: boolean;
  staleMs: number;
  /** The column the rows are sorted by (they come sorted), null for the list's order. */
  sort?: Sort | null;
  onSort?: (column: SortColumn) => void;
  /** Removes an instrument from the watchlist shown. */
  onRemove?: (symbol: string) => void;
}

const COLUMNS: { column: SortColumn; label: string; numeric: boolean }[] = [
  { column: "symbol", label: "Symbol", numeric: false },
  { column: "bid", label: "Bid", numeric: true },
  { column: "ask", label: "Ask", numeric: true },
  { column: "last", label: "Last", numeric: true },
  { column: "change", label: "Chg", numeric: true },
  { column: "change_pct", label: "Chg %", numeric: true },
  { column: "volume", label: "Volume", numeric: true },
  { column: "vwap", label: "VWAP", numeric: true },
];

function flashClass(tick: Tick | undefined): string {
  if (!tick) return "";
  return tick.dir > 0 ? "flash-up" : "flash-down";
}

function tone(text: string | null | undefined): string {
  const s = signDec(text);
  return s > 0 ? "up" : s < 0 ? "down" : "";
}

interface RowProps {
  s: InstrumentState;
  info: Instrument | undefined;
  spark: number[] | undefined;
  ticks: InstrumentTicks | undefined;
  selected: boolean;
  cursor: boolean;
  stale: boolean;
  onClick: (symbol: string) => void;
  onRemove?: (symbol: string) => void;
}

const Row = memo(function Row({ s, info, spark, ticks, selected, cursor, stale, onClick, onRemove }: RowProps) {
  const lastDir = ticks?.last?.dir;
  return (
    <tr
      id={`mw-row-${s.symbol}`}
      data-symbol={s.symbol}
      data-seq={s.seq}
      data-stale={stale ? "true" : "false"}
      aria-selected={selected}
      className={`${selected ? "selected" : ""} ${cursor ? "cursor" : ""} ${stale ? "stale" : ""}`}
      onClick={() => onClick(s.symbol)}
    >
      <th scope="row" className="sym" title={info ? `${info.description} · tick ${info.tick_size} · ×${info.multiplier}` : undefined}>
        <span className="sym-code">{s.symbol}</span>
        {stale && <span className="tag tag-stale">stale</span>}
        {onRemove && (
          <button
            type="button"
            className="wl-remove"
            aria-label={`Remove ${s.symbol} from the watchlist`}
            title="Remove from the watchlist"
            onClick={(e) => {
              e.stopPropagation();
              onRemove(s.symbol);
            }}
            data-remove={s.symbol}
          >
            ×
          </button>
        )}
      </th>
      <td key={`b${ticks?.bid?.n ?? 0}`} className={`num px bid ${flashClass(ticks?.bid)}`} data-field="bid">
        {fmtInstrumentPrice(s.bid, info)}
      </td>
      <td key={`a${ticks?.ask?.n ?? 0}`} className={`num px ask ${flashClass(ticks?.ask)}`} data-field="ask">
        {fmtInstrumentPrice(s.ask, info)}
      </td>
      <td
        key={`l${ticks?.last?.n ?? 0}`}
        className={`num px last ${lastDir ? (lastDir > 0 ? "up" : "down") : ""} ${flashClass(ticks?.last)}`}
        data-field="last"
      >
        {fmtInstrumentPrice(s.last, info)}
      </td>
      <td className={`num chg ${tone(s.change)}`} data-field="change">
        {fmtInstrumentChange(s.change, info)}
      </td>
      <td className={`num pct ${tone(s.change_pct)}`} data-field="change_pct">
        {fmtPct(s.change_pct)}
      </td>
      <td className="num vol" data-field="volume">
        {fmtInt(s.volume)}
      </td>
      <td className="num vwap" data-field="vwap" title={s.vwap ?? undefined}>
        {fmtAvgPrice(s.vwap, info)}
      </td>
      <td className="trend">
        <Sparkline values={spark} />
      </td>
    </tr>
  );
});

export default function MarketWatch({
  instruments,
  sparks,
  ticks,
  catalog,
  selected,
  onSelect,
  nowMs,
  connected,
  staleMs,
  sort = null,
  onSort,
  onRemove,
}: MarketWatchProps) {
  const [cursor, setCursor] = useState<string | null>(selected);

  useEffect(() => {
    setCursor(selected);
  }, [selected]);

  const onClick = useCallback(
    (symbol: string) => {
      setCursor(symbol);
      onSelect(symbol);
    },
    [onSelect],
  );

  const onKeyDown = (e: React.KeyboardEvent<HTMLTableElement>) => {
    if (instruments.length === 0) return;
    const index = Math.max(
      0,
      instruments.findIndex((s) => s.symbol === cursor),
    );
    let next = index;
    switch (e.key) {
      case "ArrowDown":
        next = Math.min(instruments.length - 1, index + 1);
        break;
      case "ArrowUp":
        next = Math.max(0, index - 1);
        break;
      case "Home":
        next = 0;
        break;
      case "End":
        next = instruments.length - 1;
        break;
      case "Enter":
      case " ":
        e.preventDefault();
        if (cursor) onSelect(cursor);
        return;
      default:
        return;
    }
    e.preventDefault();
    const symbol = instruments[next].symbol;
    setCursor(symbol);
    document.getElementById(`mw-row-${symbol}`)?.scrollIntoView({ block: "nearest" });
  };

  return (
    <div className="table-scroll">
      <table
        className="grid-table market-watch"
        role="grid"
        aria-label="Market watch: arrow keys move, Enter charts the instrument"
        aria-activedescendant={cursor ? `mw-row-${cursor}` : undefined}
        tabIndex={0}
        onKeyDown={onKeyDown}
        data-testid="market-watch"
      >
        <thead>
          <tr>
            {COLUMNS.map(({ column, label, numeric }) => {
              const active = sort?.column === column;
              return (
                <th
                  key={column}
                  scope="col"
                  className={numeric ? "num" : "sym"}
                  aria-sort={active ? (sort!.dir === 1 ? "ascending" : "descending") : undefined}
                >
                  {onSort ? (
                    <button type="button" className={`sort ${active ? "sorted" : ""}`} onClick={() => onSort(column)} data-sort={column}>
                      {label}
                      <span aria-hidden="true">{active ? (sort!.dir === 1 ? " ▲" : " ▼") : ""}</span>
                    </button>
                  ) : (
                    label
                  )}
                </th>
              );
            })}
            <th scope="col" className="trend">Trend</th>
          </tr>
        </thead>
        <tbody className="live-values">
          {instruments.length === 0 && (
            <EmptyRow columns={9}>
              {onRemove ? "This watchlist is empty: add instruments with the search above." : "No instruments yet."}
            </EmptyRow>
          )}
          {instruments.map((s) => (
            <Row
              key={s.symbol}
              s={s}
              info={catalog[s.symbol]}
              spark={sparks[s.symbol]}
              ticks={ticks[s.symbol]}
              selected={s.symbol === selected}
              cursor={s.symbol === cursor}
              stale={connected && isInstrumentStale(s, nowMs, staleMs)}
              onClick={onClick}
              onRemove={onRemove}
            />
          ))}
        </tbody>
      </table>
    </div>
  );
}
