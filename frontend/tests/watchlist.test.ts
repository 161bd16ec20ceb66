import { describe, expect, it } from "vitest";
import {
  MAX_SYMBOLS,
  STORAGE_KEY,
  activeSymbols,
  addSymbol,
  arrange,
  createList,
  defaultWatchlists,
  deleteActiveList,
  loadWatchlists,
  parseWatchlists,
  removeSymbol,
  saveWatchlists,
  searchCatalog,
  setActive,
  toggleSort,
} from "@/lib/watchlist";
import type { Instrument } from "@/lib/types";
import { inst } from "./helpers";

const CATALOG = ["ESZ6", "NQZ6", "CLF7", "ZNH7"];
const INSTRUMENTS: Instrument[] = [
  { symbol: "ESZ6", description: "E-mini S&P 500 Dec 2026", tick_size: "0.25", multiplier: "50" },
  { symbol: "NQZ6", description: "E-mini Nasdaq-100 Dec 2026", tick_size: "0.25", multiplier: "20" },
  { symbol: "CLF7", description: "Crude Oil Jan 2027", tick_size: "0.01", multiplier: "1000" },
  { symbol: "ZNH7", description: "10-Year T-Note Mar 2027", tick_size: "0.015625", multiplier: "1000" },
];

describe("watchlists", () => {
  it("a first visit watches the whole catalog", () => {
    const w = loadWatchlists(null, CATALOG);
    expect(activeSymbols(w)).toEqual(["CLF7", "ESZ6", "NQZ6", "ZNH7"]);
  });

  it("adds, removes, keeps the order the user chose, and never holds a symbol twice", () => {
    let w = createList(defaultWatchlists(CATALOG), "Energy");
    expect(w.active).toBe("Energy");
    expect(activeSymbols(w)).toEqual([]);
    w = addSymbol(addSymbol(addSymbol(w, "ZNH7"), "CLF7"), "ZNH7");
    expect(activeSymbols(w)).toEqual(["ZNH7", "CLF7"]);
    w = removeSymbol(w, "ZNH7");
    expect(activeSymbols(w)).toEqual(["CLF7"]);
    // The other list is untouched.
    expect(activeSymbols(setActive(w, "Main"))).toHaveLength(4);
  });

  it("names lists uniquely, bounds them, and never deletes the last one", () => {
    let w = createList(createList(defaultWatchlists(CATALOG), "  Rates  "), "Rates");
    expect(w.lists.map((l) => l.name)).toEqual(["Main", "Rates", "Rates 2"]);
    expect(createList(w, "   ")).toBe(w);
    w = deleteActiveList(w);
    expect(w.lists.map((l) => l.name)).toEqual(["Main", "Rates"]);
    const one = defaultWatchlists(CATALOG);
    expect(deleteActiveList(one)).toBe(one);
  });

  it("reads back what it saved", () => {
    const store = new Map<string, string>();
    const storage = { getItem: (k: string) => store.get(k) ?? null, setItem: (k: string, v: string) => void store.set(k, v) };
    let w = addSymbol(createList(defaultWatchlists(CATALOG), "Mine"), "NQZ6");
    w = { ...w, sort: { column: "volume", dir: -1 } };
    expect(saveWatchlists(storage, w)).toBe(true);
    expect(store.has(STORAGE_KEY)).toBe(true);
    expect(loadWatchlists(storage, CATALOG)).toEqual(w);
  });

  it("survives whatever is stored: garbage, other shapes, unknown symbols, markup, huge lists", () => {
    for (const text of ["", "not json", "null", "42", "[]", '{"lists":"x"}', '{"lists":[null,1,{"name":5}]}']) {
      expect(parseWatchlists(text, CATALOG)).toEqual(defaultWatchlists(CATALOG));
    }
    const w = parseWatchlists(
      JSON.stringify({
        active: "nope",
        lists: [
          { name: "<img src=x onerror=alert(1)>", symbols: ["ESZ6", "GONE", "ESZ6", 7, "CLF7"] },
          { name: "<img src=x onerror=alert(1)>", symbols: [] },
          { name: "Big", symbols: Array.from({ length: 500 }, () => "ESZ6") },
        ],
        sort: { column: "__proto__", dir: 1 },
      }),
      CATALOG,
    );
    // The name is kept as text (React escapes it); the symbols the catalog does not know go.
    expect(w.lists.map((l) => [l.name, l.symbols])).toEqual([
      ["<img src=x onerror=alert(1)>", ["ESZ6", "CLF7"]],
      ["Big", ["ESZ6"]],
    ]);
    expect(w.active).toBe("<img src=x onerror=alert(1)>");
    expect(w.sort).toBeNull();
    let big = defaultWatchlists([]);
    for (let i = 0; i < MAX_SYMBOLS + 5; i++) big = addSymbol(big, `S${i}`);
    expect(activeSymbols(big)).toHaveLength(MAX_SYMBOLS);
  });

  it("storage that refuses to work is not fatal", () => {
    const broken = {
      getItem: () => {
        throw new Error("SecurityError");
      },
      setItem: () => {
        throw new Error("QuotaExceededError");
      },
    };
    expect(activeSymbols(loadWatchlists(broken, CATALOG))).toHaveLength(4);
    expect(saveWatchlists(broken, defaultWatchlists(CATALOG))).toBe(false);
  });

  it("sorts by any column, missing values last, ties in the list's order; a third click restores it", () => {
    const states = [
      inst("ESZ6", 1, { volume: 10, last: "100.50", change: "-1.00" }),
      inst("NQZ6", 1, { volume: 30, last: null, change: "2.00" }),
      inst("CLF7", 1, { volume: 10, last: "61.50", change: null }),
    ];
    const order = ["NQZ6", "ESZ6", "CLF7", "ZNH7"]; // ZNH7 has no state yet: not shown
    expect(arrange(states, order, null).map((s) => s.symbol)).toEqual(["NQZ6", "ESZ6", "CLF7"]);
    let sort = toggleSort(null, "volume");
    expect(sort).toEqual({ column: "volume", dir: -1 });
    expect(arrange(states, order, sort).map((s) => s.symbol)).toEqual(["NQZ6", "ESZ6", "CLF7"]);
    sort = toggleSort(sort, "volume");
    expect(arrange(states, order, sort).map((s) => s.symbol)).toEqual(["ESZ6", "CLF7", "NQZ6"]);
    expect(toggleSort(sort, "volume")).toBeNull();
    expect(arrange(states, order, { column: "last", dir: 1 }).map((s) => s.symbol)).toEqual(["CLF7", "ESZ6", "NQZ6"]);
    expect(arrange(states, order, { column: "last", dir: -1 }).map((s) => s.symbol)).toEqual(["ESZ6", "CLF7", "NQZ6"]);
    expect(arrange(states, order, { column: "change", dir: -1 }).map((s) => s.symbol)).toEqual(["NQZ6", "ESZ6", "CLF7"]);
    expect(arrange(states, order, toggleSort(null, "symbol")).map((s) => s.symbol)).toEqual(["CLF7", "ESZ6", "NQZ6"]);
  });

  it("searches the catalog by symbol first, then by description, leaving out what is listed", () => {
    expect(searchCatalog(INSTRUMENTS, "n", new Set()).map((i) => i.symbol)).toEqual(["NQZ6", "ESZ6", "CLF7", "ZNH7"]);
    expect(searchCatalog(INSTRUMENTS, "crude", new Set()).map((i) => i.symbol)).toEqual(["CLF7"]);
    expect(searchCatalog(INSTRUMENTS, "e-mini", new Set(["ESZ6"])).map((i) => i.symbol)).toEqual(["NQZ6"]);
    expect(searchCatalog(INSTRUMENTS, "   ", new Set())).toEqual([]);
    expect(searchCatalog(INSTRUMENTS, "z", new Set(), 2)).toHaveLength(2);
  });
});
