// Display formatting. Everything here is deterministic (no locale, no time zone) so that the
// server-rendered HTML and the hydrating client print the same text.

import { decimalsOf, parseDec, formatScaled, roundDec, signDec, type Scaled } from "./decimal";
import type { Instrument } from "./types";

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

// ---- prices in the instrument's notation ----------------------------------------------------
//
// The catalog's `price_format` says how traders write an instrument's prices:
//
// - "decimal": the server's decimal string padded to the tick's decimals ("6850.25").
// - "thirty_seconds" (bond futures): the handle, a dash, and the 32nds, always two digits. The
//   notation depends on the instrument's tick, so that one instrument always prints the same way:
//   - tick 1/32 or 1/64 (halves of a 32nd, e.g. ZN): "+" marks the half, the usual CME and
//     Bloomberg screen notation: 112.5 → "112-16", 112.515625 → "112-16+", 112.15625 → "112-05".
//   - tick 1/128 (quarters of a 32nd, e.g. ZF): a third digit gives the quarter, CME's
//     fractional notation, 0/2/5/7 for 0, 1/4, 1/2, 3/4 (the 2 and 7 are truncated .25 and .75):
//     112.5 → "112-160", 112.5078125 → "112-162", 112.515625 → "112-165", 112.5234375 →
//     "112-167".
//   A tick that is no multiple of 1/128 (eighths of a 32nd) is not written in 32nds: decimals.
// - "eighths" (grains): cents, an apostrophe and the eighths of a cent: 445 → "445'0",
//   445.25 → "445'2", 445.5 → "445'4", 445.75 → "445'6", and with an eighth-cent tick
//   445.125 → "445'1" (ZC's tick is a quarter cent, so there 445.125 is off the grid).
//
// What the notation cannot show exactly falls back to the plain decimal (padded to the tick's
// decimals), never throws and never rounds: a negative price, a price off the tick grid, a tick
// the notation cannot express. Text that is no decimal at all ("abc", "1e400") is printed as given
// (an empty one as a dash).

/** The value if `text` is a plain decimal string, else null (parseDec throws on anything else). */
function tryParse(text: string): Scaled | null {
  if (text.trim() === "") return null;
  try {
    return parseDec(text);
  } catch {
    return null;
  }
}

/** `value * per` if that is a whole number, else null ("0.25" at 8 → 2n, "0.1" at 8 → null). */
function wholeIn(value: Scaled, per: bigint): bigint | null {
  const n = value.units * per;
  const den = 10n ** BigInt(value.scale);
  return n % den === 0n ? n / den : null;
}

/** The instrument's notation: "decimal" when the catalog entry, or its price_format, is missing. */
function formatOf(info: Instrument | undefined): "decimal" | "thirty_seconds" | "eighths" {
  const f = info?.price_format;
  return f === "thirty_seconds" || f === "eighths" ? f : "decimal";
}

/** A non-negative value in 32nds, or null when the notation cannot show it (see above). */
function thirtySeconds(value: Scaled, tick: Scaled | null): string | null {
  if (value.units < 0n || tick == null || tick.units <= 0n) return null;
  const tickQ = wholeIn(tick, 128n); // the tick in quarters of a 32nd
  const q = wholeIn(value, 128n); // the price in quarters of a 32nd
  if (tickQ == null || q == null || q % tickQ !== 0n) return null;
  const handle = q / 128n;
  const rest = q % 128n;
  const points = (rest / 4n).toString().padStart(2, "0");
  const quarter = Number(rest % 4n);
  if (tickQ % 2n === 0n) return `${handle}-${points}${quarter === 2 ? "+" : ""}`;
  return `${handle}-${points}${"0257"[quarter]}`;
}

/** A non-negative value in cents and eighths, or null when the notation cannot show it. */
function eighths(value: Scaled, tick: Scaled | null): string | null {
  if (value.units < 0n || tick == null || tick.units <= 0n) return null;
  const tickE = wholeIn(tick, 8n);
  const e = wholeIn(value, 8n);
  if (tickE == null || e == null || e % tickE !== 0n) return null;
  return `${e / 8n}'${e % 8n}`;
}

/** The fractional notation of a non-negative value, or null for "decimal" or when it cannot. */
function fractional(value: Scaled, info: Instrument | undefined): string | null {
  const format = formatOf(info);
  if (format === "decimal") return null;
  const tick = info?.tick_size == null ? null : tryParse(info.tick_size);
  return format === "thirty_seconds" ? thirtySeconds(value, tick) : eighths(value, tick);
}

/**
 * A price as traders read it, in the instrument's `price_format` (see above): "6850.25",
 * "112-16+", "445'2". A missing catalog entry prints the decimal padded to 2 decimals.
 */
export function fmtInstrumentPrice(text: string | null | undefined, info: Instrument | undefined): string {
  if (text == null || text.trim() === "") return DASH;
  const value = tryParse(text);
  if (value == null) return text;
  return fractional(value, info) ?? padDec(text.trim(), decimalsOf(info?.tick_size));
}

/**
 * A signed change in the instrument's notation: "+0.25", "-0-08+", "+2'4", and "0-00" for no
 * change. Where the notation cannot show it, the decimal padded to the tick's decimals.
 */
export function fmtInstrumentChange(text: string | null | undefined, info: Instrument | undefined): string {
  if (text == null || text.trim() === "") return DASH;
  const value = tryParse(text);
  if (value == null) return text;
  const sign = value.units < 0n ? -1 : value.units > 0n ? 1 : 0;
  const body = fractional({ units: sign < 0 ? -value.units : value.units, scale: value.scale }, info);
  if (body == null) return fmtChange(text.trim(), decimalsOf(info?.tick_size));
  return `${sign > 0 ? "+" : sign < 0 ? "-" : ""}${body}`;
}

/**
 * An average price (VWAP, a position's average cost), exactly rounded half away from zero.
 *
 * - decimal instruments: to the tick's decimals plus 2 at most, at least the tick's decimals
 *   ("6850.1666666667" → "6850.1667", "6850.5" → "6850.50").
 * - fractional notations: a plain decimal with 4 decimals ("112.5156", "445.3333"). An average
 *   lies between ticks, so 32nds or eighths could show it only rounded to a tick (ZN's tick is
 *   0.015625: up to half of that off) or with a decimal fraction of a 32nd, which traders misread;
 *   and the tick's own decimals (6 for 1/64) would ask for 8. A step of 0.0001 is under 1/150
 *   of ZN's tick and far finer than an eighth of a cent.
 *
 * Never through floats. Text that is no decimal is printed as given.
 */
export function fmtAvgPrice(text: string | null | undefined, info: Instrument | undefined): string {
  if (text == null || text.trim() === "") return DASH;
  const value = tryParse(text);
  if (value == null) return text;
  if (formatOf(info) !== "decimal") return roundDec(text, 4);
  const tickDp = decimalsOf(info?.tick_size);
  if (value.units === 0n) return padDec("0", tickDp);
  return roundDec(text, Math.max(tickDp, Math.min(value.scale, tickDp + 2)));
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
