// Watchlists, as plain data: named lists of symbols, the active one, and the market watch's
// sort. Saved in the browser (localStorage); whatever is stored is read defensively (another
// version, a symbol the catalog no longer has, a hand-edited value) and never breaks the page.

import type { Instrument, InstrumentState } from "./types";

export const STORAGE_KEY = "ttpulse.watchlists.v1";
export const DEFAULT_LIST = "Main";
/** Bounds on what is kept: a list longer than the server's subscription limit is no use. */
export const MAX_LISTS = 20;
export const MAX_SYMBOLS = 100;
export const MAX_NAME = 40;

export type SortColumn = "symbol" | "bid" | "ask" | "last" | "change" | "change_pct" | "volume" | "vwap";
export const SORT_COLUMNS: readonly SortColumn[] = ["symbol", "bid", "ask", "last", "change", "change_pct", "volume", "vwap"];

export interface Sort {
  column: SortColumn;
  /** 1 ascending, -1 descending. */
  dir: 1 | -1;
}

export interface Watchlists {
  active: string;
  lists: { name: string; symbols: string[] }[];
  /** null: the list's own order. */
  sort: Sort | null;
}

/** Every instrument of the catalog in one list: what a first visit shows. */
export function defaultWatchlists(catalog: string[]): Watchlists {
  return { active: DEFAULT_LIST, lists: [{ name: DEFAULT_LIST, symbols: [...catalog].sort().slice(0, MAX_SYMBOLS) }], sort: null };
}

/** Reads what was stored; anything unusable falls back to the default. */
export function parseWatchlists(text: string | null | undefined, catalog: string[]): Watchlists {
  const fallback = defaultWatchlists(catalog);
  if (!text) return fallback;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return fallback;
  }
  if (!raw || typeof raw !== "object") return fallback;
  const known = new Set(catalog);
  const obj = raw as Record<string, unknown>;
  const lists: Watchlists["lists"] = [];
  for (const entry of Array.isArray(obj.lists) ? obj.lists : []) {
    if (!entry || typeof entry !== "object") continue;
    const { name, symbols } = entry as Record<string, unknown>;
    const cleanName = cleanListName(name);
    if (!cleanName || lists.some((l) => l.name === cleanName)) continue;
    const kept = (Array.isArray(symbols) ? symbols : []).filter(
      (s): s is string => typeof s === "string" && known.has(s),
    );
    lists.push({ name: cleanName, symbols: [...new Set(kept)].slice(0, MAX_SYMBOLS) });
    if (lists.length === MAX_LISTS) break;
  }
  if (lists.length === 0) return fallback;
  const active = typeof obj.active === "string" && lists.some((l) => l.name === obj.active) ? obj.active : lists[0].name;
  return { active, lists, sort: parseSort(obj.sort) };
}

function parseSort(raw: unknown): Sort | null {
  if (!raw || typeof raw !== "object") return null;
  const { column, dir } = raw as Record<string, unknown>;
  if (!SORT_COLUMNS.includes(column as SortColumn) || (dir !== 1 && dir !== -1)) return null;
  return { column: column as SortColumn, dir };
}

/** A list name as typed, trimmed and bounded; null when empty. */
export function cleanListName(name: unknown): string | null {
  if (typeof name !== "string") return null;
  const trimmed = name.replace(/\s+/g, " ").trim().slice(0, MAX_NAME);
  return trimmed || null;
}

export function activeSymbols(w: Watchlists): string[] {
  return w.lists.find((l) => l.name === w.active)?.symbols ?? [];
}

function withActive(w: Watchlists, change: (symbols: string[]) => string[]): Watchlists {
  return { ...w, lists: w.lists.map((l) => (l.name === w.active ? { ...l, symbols: change(l.symbols) } : l)) };
}

export function addSymbol(w: Watchlists, symbol: string): Watchlists {
  return withActive(w, (symbols) => (symbols.includes(symbol) || symbols.length >= MAX_SYMBOLS ? symbols : [...symbols, symbol]));
}

export function removeSymbol(w: Watchlists, symbol: string): Watchlists {
  return withActive(w, (symbols) => symbols.filter((s) => s !== symbol));
}

/** Adds an empty list and makes it active (a name in use gets a number). */
export function createList(w: Watchlists, name: string): Watchlists {
  const base = cleanListName(name);
  if (!base || w.lists.length >= MAX_LISTS) return w;
  let unique = base;
  for (let n = 2; w.lists.some((l) => l.name === unique); n += 1) {
    // The number goes within MAX_NAME: a longer name would be cut when read back, and meet
    // the first list's name.
    const suffix = ` ${n}`;
    unique = `${base.slice(0, MAX_NAME - suffix.length).trimEnd()}${suffix}`;
  }
  return { ...w, active: unique, lists: [...w.lists, { name: unique, symbols: [] }] };
}

/** Removes the active list (the last one is never removed). */
export function deleteActiveList(w: Watchlists): Watchlists {
  if (w.lists.length <= 1) return w;
  const lists = w.lists.filter((l) => l.name !== w.active);
  return { ...w, lists, active: lists[0].name };
}

export function setActive(w: Watchlists, name: string): Watchlists {
  return w.lists.some((l) => l.name === name) ? { ...w, active: name } : w;
}

/** Clicking a column: ascending, then descending, then the list's own order. */
export function toggleSort(current: Sort | null, column: SortColumn): Sort | null {
  if (!current || current.column !== column) return { column, dir: column === "symbol" ? 1 : -1 };
  if (current.dir === (column === "symbol" ? 1 : -1)) return { column, dir: current.dir === 1 ? -1 : 1 };
  return null;
}

function sortValue(s: InstrumentState, column: SortColumn): number | string | null {
  if (column === "symbol") return s.symbol;
  const v = s[column];
  if (v == null) return null;
  const n = typeof v === "number" ? v : parseFloat(v);
  return Number.isFinite(n) ? n : null;
}

/**
 * The rows of `symbols` in the list's order, or sorted by a column (missing values last,
 * whatever the direction; ties in the list's order).
 */
export function arrange(states: InstrumentState[], symbols: string[], sort: Sort | null): InstrumentState[] {
  const bySymbol = new Map(states.map((s) => [s.symbol, s]));
  const rows = symbols.map((symbol) => bySymbol.get(symbol)).filter((s): s is InstrumentState => s != null);
  if (!sort) return rows;
  const position = new Map(symbols.map((s, i) => [s, i]));
  return [...rows].sort((a, b) => {
    const va = sortValue(a, sort.column);
    const vb = sortValue(b, sort.column);
    if (va == null || vb == null) return va == null && vb == null ? position.get(a.symbol)! - position.get(b.symbol)! : va == null ? 1 : -1;
    const c = va < vb ? -1 : va > vb ? 1 : 0;
    return c * sort.dir || position.get(a.symbol)! - position.get(b.symbol)!;
  });
}

/** Catalog entries matching a query (symbol prefix first, then any word of the description). */
export function searchCatalog(catalog: Instrument[], query: string, exclude: ReadonlySet<string>, limit = 8): Instrument[] {
  const q = query.trim().toLowerCase();
  if (!q) return [];
  const candidates = catalog.filter((i) => !exclude.has(i.symbol));
  const bySymbol = candidates.filter((i) => i.symbol.toLowerCase().startsWith(q));
  const byText = candidates.filter(
    (i) => !bySymbol.includes(i) && (i.symbol.toLowerCase().includes(q) || i.description.toLowerCase().includes(q)),
  );
  return [...bySymbol, ...byText].slice(0, limit);
}

/** localStorage that may be missing, full or refused (private mode): failures are not fatal. */
export function loadWatchlists(storage: Pick<Storage, "getItem"> | null, catalog: string[]): Watchlists {
  let text: string | null = null;
  try {
    text = storage?.getItem(STORAGE_KEY) ?? null;
  } catch {
    /* storage refused */
  }
  return parseWatchlists(text, catalog);
}

export function saveWatchlists(storage: Pick<Storage, "setItem"> | null, w: Watchlists): boolean {
  try {
    storage?.setItem(STORAGE_KEY, JSON.stringify(w));
    return storage != null;
  } catch {
    return false;
  }
}
