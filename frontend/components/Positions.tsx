import { Fragment, memo } from "react";
import type { Instrument, PositionState } from "@/lib/types";
import { addDec, signDec, sumDec } from "@/lib/decimal";
import { accountTotals } from "@/lib/positions";
import { fmtAvgPrice, fmtInt, fmtMoney, fmtSignedInt } from "@/lib/format";
import { EmptyRow } from "./EmptyRow";

export interface PositionsProps {
  positions: PositionState[];
  /** Fills per account so far. */
  accounts: Record<string, number>;
  catalog: Record<string, Instrument>;
}

function tone(text: string): string {
  const s = signDec(text);
  return s > 0 ? "up" : s < 0 ? "down" : "muted";
}

function Money({ value, className = "" }: { value: string; className?: string }) {
  return (
    <td className={`num ${tone(value)} ${className}`} title={value}>
      {fmtMoney(value)}
    </td>
  );
}

function PositionsImpl({ positions, accounts, catalog }: PositionsProps) {
  const groups = accountTotals(positions);
  const grand = sumDec(groups.map((g) => g.total));
  return (
    <div className="positions-wrap">
      <div className="account-strip" data-testid="account-totals">
        {groups.map((g) => (
          <div key={g.account} className="account-card" data-account={g.account}>
            <div className="account-name">{g.account}</div>
            <div className={`account-pnl num ${tone(g.total)}`} title={g.total}>
              {fmtMoney(g.total)}
            </div>
            <div className="account-sub">
              <span>
                R <span className={`num ${tone(g.realized)}`}>{fmtMoney(g.realized)}</span>
              </span>
              <span>
                U <span className={`num ${tone(g.unrealized)}`}>{fmtMoney(g.unrealized)}</span>
              </span>
            </div>
          </div>
        ))}
        {groups.length > 1 && (
          <div className="account-card all">
            <div className="account-name">All accounts</div>
            <div className={`account-pnl num ${tone(grand)}`} title={grand}>
              {fmtMoney(grand)}
            </div>
            <div className="account-sub">{groups.reduce((n, g) => n + g.open, 0)} open positions</div>
          </div>
        )}
      </div>
      <div className="table-scroll">
        <table className="grid-table positions" aria-label="Positions by account" data-testid="positions">
          <thead>
            <tr>
              <th scope="col" className="sym">Symbol</th>
              <th scope="col" className="num">Net qty</th>
              <th scope="col" className="num">Avg price</th>
              <th scope="col" className="num">Realized P&amp;L</th>
              <th scope="col" className="num">Unrealized P&amp;L</th>
              <th scope="col" className="num">Total P&amp;L</th>
            </tr>
          </thead>
          <tbody className="live-values">
            {groups.length === 0 && <EmptyRow columns={6}>No positions yet.</EmptyRow>}
            {groups.map((g) => (
              <Fragment key={g.account}>
                <tr className="group-row" data-account={g.account}>
                  <th scope="rowgroup" className="sym">
                    {g.account}
                    <span className="muted small"> · {g.open} open · {fmtInt(accounts[g.account] ?? 0)} fills</span>
                  </th>
                  <td />
                  <td />
                  <Money value={g.realized} className="total" />
                  <Money value={g.unrealized} className="total" />
                  <Money value={g.total} className="total" />
                </tr>
                {g.rows.map((p) => {
                  const total = addDec(p.realized_pnl, p.unrealized_pnl);
                  return (
                    <tr
                      key={p.symbol}
                      className={p.net_qty === 0 ? "flat" : ""}
                      data-position={`${p.account}:${p.symbol}`}
                      data-seq={p.seq}
                    >
                      <th scope="row" className="sym indent">
                        {p.symbol}
                      </th>
                      <td className={`num ${p.net_qty > 0 ? "up" : p.net_qty < 0 ? "down" : "muted"}`}>
                        {fmtSignedInt(p.net_qty)}
                      </td>
                      <td className="num" title={p.avg_price}>
                        {p.net_qty === 0 ? "—" : fmtAvgPrice(p.avg_price, catalog[p.symbol])}
                      </td>
                      <Money value={p.realized_pnl} />
                      <Money value={p.unrealized_pnl} />
                      <Money value={total} />
                    </tr>
                  );
                })}
              </Fragment>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}

export default memo(PositionsImpl);
