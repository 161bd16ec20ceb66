import { memo } from "react";
import type { FillReport, Instrument } from "@/lib/types";
import { decimalsOf } from "@/lib/decimal";
import { fmtInt, fmtPrice, fmtTime } from "@/lib/format";

function FillsImpl({ fills, catalog }: { fills: FillReport[]; catalog: Record<string, Instrument> }) {
  return (
    <div className="table-scroll">
      <table className="grid-table fills" aria-label="Recent fills" data-testid="fills">
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
          {fills.length === 0 && (
            <tr>
              <td colSpan={7} className="empty">
                Fills appear here as they arrive.
              </td>
            </tr>
          )}
          {fills.map((f) => (
            <tr key={`${f.account}:${f.symbol}:${f.seq}`} data-fill={`${f.account}:${f.symbol}:${f.seq}`}>
              <td className="num muted">{fmtTime(f.ts)}</td>
              <td>{f.account}</td>
              <th scope="row" className="sym">
                {f.symbol}
              </th>
              <td>
                <span className={`side side-${f.side}`}>{f.side === "buy" ? "BUY" : "SELL"}</span>
              </td>
              <td className="num">{fmtInt(f.qty)}</td>
              <td className="num">{fmtPrice(f.price, decimalsOf(catalog[f.symbol]?.tick_size))}</td>
              <td className="num muted">{f.seq}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export default memo(FillsImpl);
