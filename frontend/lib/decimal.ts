// Exact decimal arithmetic on the server's decimal strings, by scaled BigInt. Money totals are
// summed here, never with floats: 0.1 + 0.2 must stay 0.3.

export interface Scaled {
  /** The value times 10^scale. */
  units: bigint;
  /** Digits after the decimal point. */
  scale: number;
}

const DECIMAL_RE = /^([+-])?(\d*)(?:\.(\d*))?$/;

/** Parses "123", "-0.0036", "+1.50", ".5". Throws on anything else (exponents included). */
export function parseDec(text: string): Scaled {
  const m = DECIMAL_RE.exec(text.trim());
  if (!m || (m[2] === "" && (m[3] === undefined || m[3] === ""))) {
    throw new Error(`not a decimal: ${JSON.stringify(text)}`);
  }
  const int = m[2] || "0";
  const frac = m[3] ?? "";
  const units = BigInt(int + frac);
  return { units: m[1] === "-" ? -units : units, scale: frac.length };
}

function rescale(value: Scaled, scale: number): bigint {
  return value.units * 10n ** BigInt(scale - value.scale);
}

/** Prints a scaled value with exactly `scale` decimals ("-0.50", "12"). */
export function formatScaled({ units, scale }: Scaled): string {
  const negative = units < 0n;
  let digits = (negative ? -units : units).toString();
  if (scale > 0) {
    digits = digits.padStart(scale + 1, "0");
    digits = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  }
  return negative ? `-${digits}` : digits;
}

/** a + b, exactly, with the larger of the two scales. */
export function addDec(a: string, b: string): string {
  const x = parseDec(a);
  const y = parseDec(b);
  const scale = Math.max(x.scale, y.scale);
  return formatScaled({ units: rescale(x, scale) + rescale(y, scale), scale });
}

/** The exact sum of decimal strings; null entries count as zero. "0" for an empty list. */
export function sumDec(values: ReadonlyArray<string | null | undefined>): string {
  const parsed = values.filter((v): v is string => v != null && v !== "").map(parseDec);
  const scale = parsed.reduce((s, v) => Math.max(s, v.scale), 0);
  const units = parsed.reduce((acc, v) => acc + rescale(v, scale), 0n);
  return formatScaled({ units, scale });
}

/** -1, 0 or 1. */
export function signDec(text: string | null | undefined): -1 | 0 | 1 {
  if (text == null || text === "") return 0;
  const { units } = parseDec(text);
  return units < 0n ? -1 : units > 0n ? 1 : 0;
}

/** Compares two decimals exactly: -1, 0 or 1. */
export function compareDec(a: string, b: string): -1 | 0 | 1 {
  const x = parseDec(a);
  const y = parseDec(b);
  const scale = Math.max(x.scale, y.scale);
  const d = rescale(x, scale) - rescale(y, scale);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

/**
 * Rounds half away from zero to at most `dp` decimals, exactly, for display; trailing zeros
 * are kept to `dp` ("1.15" at 4 → "1.1500", "6850.1666666667" at 4 → "6850.1667").
 */
export function roundDec(text: string, dp: number): string {
  const v = parseDec(text);
  if (v.scale <= dp) return formatScaled({ units: rescale(v, dp), scale: dp });
  const drop = 10n ** BigInt(v.scale - dp);
  const negative = v.units < 0n;
  const abs = negative ? -v.units : v.units;
  let q = abs / drop;
  if ((abs % drop) * 2n >= drop) q += 1n;
  return formatScaled({ units: negative ? -q : q, scale: dp });
}

/** Number of decimals of a tick size ("0.25" → 2, "0.015625" → 6, "1" → 0). */
export function decimalsOf(text: string | null | undefined): number {
  if (!text) return 2;
  const dot = text.indexOf(".");
  return dot < 0 ? 0 : text.length - dot - 1;
}
