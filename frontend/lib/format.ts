// Display formatting. Everything here is deterministic (no locale, no time zone) so that the
// server-rendered HTML and the hydrating client print the same text.

import { decimalsOf, parseDec, formatScaled, roundDec, signDec } from "./decimal";

export const DASH = "—";

/** Pads a decimal string with zeros to at least `minDp` decimals; never rounds or truncates. */
export function padDec(text: string, minDp: number): string {
  const dot = text.indexOf(".");
  const have = dot < 0 ? 0 : text.length - dot - 1;
  if (have >= minDp) return text;
  return (dot < 0 ? `${text}.` : text) + "0".repeat(minDp - have);
}

/** A price as the server gave it, padded to the instrument's tick decimals for alignment. */
export function fmtPrice(text: string | null | undefined, dp: number): string {
  if (text == null) return DASH;
  return padDec(text, dp);
}

/** Groups the integer part of a decimal string by thousands: "-12345.5" → "-12,345.5". */
export function groupDec(text: string): string {
  const negative = text.startsWith("-");
  const body = negative || text.startsWith("+") ? text.slice(1) : text;
  const dot = body.indexOf(".");
  const int = dot < 0 ? body : body.slice(0, dot);
  const frac = dot < 0 ? "" : body.slice(dot);
  const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${negative ? "-" : ""}${grouped}${frac}`;
}

/** An integer with thousands separators. */
export function fmtInt(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return DASH;
  return groupDec(Math.trunc(n).toString());
}

/** Signed integer ("+3", "-2", "0"). */
export function fmtSignedInt(n: number): string {
  return n > 0 ? `+${fmtInt(n)}` : fmtInt(n);
}

/** Money: exact, rounded half away from zero to 2 decimals, grouped ("-1,296.88"). */
export function fmtMoney(text: string | null | undefined): string {
  if (text == null) return DASH;
  return groupDec(roundDec(text, 2));
}

/** A signed change, as given, padded to `dp` ("+0.25", "-1.00"). */
export function fmtChange(text: string | null | undefined, dp: number): string {
  if (text == null) return DASH;
  const padded = padDec(text, dp);
  return signDec(text) > 0 && !padded.startsWith("+") ? `+${padded}` : padded;
}

/** change_pct is already in percent; shown with 2 decimals (exactly rounded) and a sign. */
export function fmtPct(text: string | null | undefined): string {
  if (text == null) return DASH;
  const r = roundDec(text, 2);
  const s = signDec(r);
  return `${s > 0 ? "+" : ""}${s === 0 ? "0.00" : r}%`;
}

/** An average price: rounded for display to the tick decimals plus 2 (the title shows it all). */
export function fmtAvg(text: string | null | undefined, tickDp: number): string {
  if (text == null) return DASH;
  const full = parseDec(text);
  if (full.units === 0n) return padDec("0", tickDp);
  const shown = roundDec(text, Math.max(tickDp, Math.min(full.scale, tickDp + 2)));
  return shown;
}

/** HH:MM:SS.mmm in UTC from Unix microseconds. */
export function fmtTime(micros: number | null | undefined): string {
  if (!micros) return DASH;
  const d = new Date(Math.floor(micros / 1000));
  const p = (n: number, w = 2) => n.toString().padStart(w, "0");
  return `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}`;
}

/** HH:MM:SS in UTC from Unix milliseconds. */
export function fmtClock(ms: number): string {
  return fmtTime(ms * 1000).slice(0, 8);
}

/** A latency in ms: "0.84 ms", "12.3 ms", "1.24 s". */
export function fmtMs(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return DASH;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

export { decimalsOf, formatScaled };
