"use client";
// The fills blotter: the day's fills of every account the user sees, newest first. Rendered on
// the server from GET /api/fills, kept complete by BlotterFeed (live fills, `recover` after a
// reconnect or a gap, HTTP reads for the rest), paged with "Load more".

import { memo, useState, useSyncExternalStore } from "react";
import type { Instrument } from "@/lib/types";
import type { BlotterFeed } from "@/lib/blotterFeed";
import { fmtInstrumentPrice, fmtInt, fmtTime } from "@/lib/format";
import { EmptyRow } from "./EmptyRow";

/** Rows shown at first, and how many more each "Load more" shows. */
export const FILLS_SHOWN = 50;

function FillsImpl({ blotter, catalog }: { blotter: BlotterFeed; catalog: Record<string, Instrument> }) {
  const view = useSyncExternalStore(blotter.subscribe, blotter.getView, blotter.getServerView);
  const [shown, setShown] = useState(FILLS_SHOWN);
  const rows = view.rows.slice(0, shown);
  const canShowMore = view.rows.length > shown || view.more;
  const loadMore = () => {
    setShown((n) => n + FILLS_SHOWN);
    // Read older pages when what is held would not fill the next screen.
    if (view.more && view.rows.length < shown + FILLS_SHOWN) void blotter.loadMore();
  };
  return (
    <div className="table-scroll">
      <div className="blotter-status" role="status" aria-live="polite" data-testid="fills-status">
        {view.error ? (
          <span className="error">{view.error} — retrying</span>
        ) : view.refilling > 0 ? (
          <span className="muted">Filling in fills missed while disconnected…</span>
        ) : null}
      </div>
      <table className="grid-table fills" aria-label="Fills" data-testid="fills" data-rows={view.rows.length}>
        <thead>
          <tr>
            <th scope="col">Time (UTC)</th>
            <th scope="col">Account</th>
            <th scope="col" className="sym">Symbol</th>
            <th scope="col">Side</th>
            <th scope="col" className="num">Qty</th>
            <th scope="col" className="num">Price</th>
            <th scope="col" className="num">Seq</th>
          </tr>
        </thead>
        <tbody className="live-values">
          {rows.length === 0 && <EmptyRow columns={7}>No fills today yet: they appear here as they arrive.</EmptyRow>}
          {rows.map((f) => (
            <tr key={`${f.account}:${f.symbol}:${f.seq}`} data-fill={`${f.account}:${f.symbol}:${f.seq}`} data-ts={f.ts}>
              <td className="num muted">{fmtTime(f.ts)}</td>
              <td>{f.account}</td>
              <th scope="row" className="sym">
                {f.symbol}
              </th>
              <td>
                <span className={`side side-${f.side}`}>{f.side === "buy" ? "BUY" : "SELL"}</span>
              </td>
              <td className="num">{fmtInt(f.qty)}</td>
              <td className="num">{fmtInstrumentPrice(f.price, catalog[f.symbol])}</td>
              <td className="num muted">{f.seq}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {canShowMore && (
        <button type="button" className="load-more" onClick={loadMore} disabled={view.loadingMore} data-testid="fills-more">
          {view.loadingMore ? "Loading…" : "Load more"}
        </button>
      )}
    </div>
  );
}

export default memo(FillsImpl);
