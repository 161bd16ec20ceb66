// Positions grouped by account, with exact decimal totals (scaled BigInt, never floats).

import type { PositionState } from "./types";
import { addDec, sumDec } from "./decimal";

export interface AccountTotals {
  account: string;
  rows: PositionState[];
  realized: string;
  unrealized: string;
  total: string;
  open: number;
}

/** Groups positions by account with exact decimal totals. */
export function accountTotals(positions: PositionState[]): AccountTotals[] {
  const groups = new Map<string, PositionState[]>();
  for (const p of positions) {
    const rows = groups.get(p.account) ?? [];
    rows.push(p);
    groups.set(p.account, rows);
  }
  return [...groups.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([account, rows]) => {
      const realized = sumDec(rows.map((r) => r.realized_pnl));
      const unrealized = sumDec(rows.map((r) => r.unrealized_pnl));
      return {
        account,
        rows,
        realized,
        unrealized,
        total: addDec(realized, unrealized),
        open: rows.filter((r) => r.net_qty !== 0).length,
      };
    });
}
