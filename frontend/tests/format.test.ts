import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";
import MarketWatch from "@/components/MarketWatch";
import Positions from "@/components/Positions";
import { fmtAvgPrice, fmtInstrumentChange, fmtInstrumentPrice } from "@/lib/format";
import type { Instrument } from "@/lib/types";
import { inst, pos } from "./helpers";

// The default catalog's entries (actors/src/domain/instruments.rs), as GET /api/instruments gives them.
const ES: Instrument = {
  symbol: "ESZ6",
  description: "E-mini S&P 500",
  tick_size: "0.25",
  multiplier: "50",
  price_format: "decimal",
};
const HG: Instrument = { symbol: "HGH7", description: "Copper", tick_size: "0.0005", multiplier: "25000" };
const ZN: Instrument = {
  symbol: "ZNH7",
  description: "10-Year T-Note",
  tick_size: "0.015625",
  multiplier: "1000",
  price_format: "thirty_seconds",
};
const ZC: Instrument = { symbol: "ZCH7", description: "Corn", tick_size: "0.25", multiplier: "50", price_format: "eighths" };
/** A quarter-32nd contract (5-Year T-Note style, tick 1/128). */
const ZF: Instrument = {
  symbol: "ZFH7",
  description: "5-Year T-Note",
  tick_size: "0.0078125",
  multiplier: "1000",
  price_format: "thirty_seconds",
};
/** Corn spreads trade in eighths of a cent. */
const ZC8: Instrument = { ...ZC, tick_size: "0.125" };

const GARBAGE = ["abc", "1e400", "1e5", "NaN", "Infinity", "-", ".", "1.2.3", "0x10", "12,5", " 1 2 ", "--1", "💥"];

describe("decimal instruments", () => {
  it("pad to the tick's decimals, as before", () => {
    expect(fmtInstrumentPrice("6850.5", ES)).toBe("6850.50");
    expect(fmtInstrumentPrice("6850", ES)).toBe("6850.00");
    expect(fmtInstrumentPrice("6850.25", ES)).toBe("6850.25");
    expect(fmtInstrumentPrice("5.1", HG)).toBe("5.1000");
    expect(fmtInstrumentPrice("0", ES)).toBe("0.00");
    expect(fmtInstrumentPrice("-1.5", ES)).toBe("-1.50");
    // Never rounds or truncates what the server sent.
    expect(fmtInstrumentPrice("6850.123", ES)).toBe("6850.123");
    expect(fmtInstrumentPrice("123456789012345678901234567890.5", ES)).toBe("123456789012345678901234567890.50");
  });

  it("a missing catalog entry or price_format (an older server) means decimal", () => {
    expect(fmtInstrumentPrice("112.515625", { ...ZN, price_format: undefined })).toBe("112.515625");
    expect(fmtInstrumentPrice("445.25", { ...ZC, price_format: undefined })).toBe("445.25");
    expect(fmtInstrumentPrice("6850.5", undefined)).toBe("6850.50");
    // An unknown format from a newer server is printed as a decimal too.
    const future = { ...ZN, price_format: "sixty_fourths" } as unknown as Instrument;
    expect(fmtInstrumentPrice("112.515625", future)).toBe("112.515625");
  });

  it("changes keep their sign and padding", () => {
    expect(fmtInstrumentChange("0.25", ES)).toBe("+0.25");
    expect(fmtInstrumentChange("-1", ES)).toBe("-1.00");
    expect(fmtInstrumentChange("0", ES)).toBe("0.00");
    expect(fmtInstrumentChange(null, ES)).toBe("—");
  });
});

describe("thirty_seconds (bond futures)", () => {
  it("prints handle-32nds, two digits, + for a half 32nd", () => {
    expect(fmtInstrumentPrice("112.5", ZN)).toBe("112-16");
    expect(fmtInstrumentPrice("112.500000", ZN)).toBe("112-16");
    expect(fmtInstrumentPrice("112.515625", ZN)).toBe("112-16+");
    expect(fmtInstrumentPrice("112.15625", ZN)).toBe("112-05");
    expect(fmtInstrumentPrice("112", ZN)).toBe("112-00");
    expect(fmtInstrumentPrice("112.015625", ZN)).toBe("112-00+");
    expect(fmtInstrumentPrice("112.96875", ZN)).toBe("112-31");
    expect(fmtInstrumentPrice("112.984375", ZN)).toBe("112-31+");
    expect(fmtInstrumentPrice("0", ZN)).toBe("0-00");
    expect(fmtInstrumentPrice("0.015625", ZN)).toBe("0-00+");
    expect(fmtInstrumentPrice("+112.5", ZN)).toBe("112-16");
    expect(fmtInstrumentPrice("1234567890123456789.515625", ZN)).toBe("1234567890123456789-16+");
  });

  it("with a quarter-32nd tick, a third digit 0/2/5/7 gives the quarter", () => {
    expect(fmtInstrumentPrice("112.5", ZF)).toBe("112-160");
    expect(fmtInstrumentPrice("112.5078125", ZF)).toBe("112-162");
    expect(fmtInstrumentPrice("112.515625", ZF)).toBe("112-165");
    expect(fmtInstrumentPrice("112.5234375", ZF)).toBe("112-167");
    expect(fmtInstrumentPrice("108.0390625", ZF)).toBe("108-012");
  });

  it("falls back to the padded decimal where 32nds cannot show the price exactly", () => {
    // Off ZN's 1/64 grid (a quarter 32nd), and off any 32nd grid.
    expect(fmtInstrumentPrice("112.5078125", ZN)).toBe("112.5078125");
    expect(fmtInstrumentPrice("112.51", ZN)).toBe("112.510000");
    expect(fmtInstrumentPrice("112.1", ZF)).toBe("112.1000000");
    // Negative.
    expect(fmtInstrumentPrice("-0.5", ZN)).toBe("-0.500000");
    expect(fmtInstrumentPrice("-112.515625", ZN)).toBe("-112.515625");
    // A tick the notation cannot express (eighths of a 32nd, or a decimal tick), or no tick.
    expect(fmtInstrumentPrice("112.5", { ...ZN, tick_size: "0.00390625" })).toBe("112.50000000");
    expect(fmtInstrumentPrice("112.5", { ...ZN, tick_size: "0.01" })).toBe("112.50");
    expect(fmtInstrumentPrice("112.5", { ...ZN, tick_size: "0" })).toBe("112.5");
    expect(fmtInstrumentPrice("112.5", { ...ZN, tick_size: "-0.015625" })).toBe("112.500000");
    expect(fmtInstrumentPrice("112.5", { ...ZN, tick_size: "abc" })).toBe("112.5");
    expect(fmtInstrumentPrice("112.5", { ...ZN, tick_size: "" })).toBe("112.50");
  });

  it("prints a change in 32nds with its sign", () => {
    expect(fmtInstrumentChange("0.25", ZN)).toBe("+0-08");
    expect(fmtInstrumentChange("-0.265625", ZN)).toBe("-0-08+");
    expect(fmtInstrumentChange("-1.03125", ZN)).toBe("-1-01");
    expect(fmtInstrumentChange("0", ZN)).toBe("0-00");
    expect(fmtInstrumentChange("0.0078125", ZF)).toBe("+0-002");
    // Off the grid: the signed decimal.
    expect(fmtInstrumentChange("0.01", ZN)).toBe("+0.010000");
    expect(fmtInstrumentChange("-0.0078125", ZN)).toBe("-0.0078125");
  });
});

describe("eighths (grains)", () => {
  it("prints cents'eighths", () => {
    expect(fmtInstrumentPrice("445.25", ZC)).toBe("445'2");
    expect(fmtInstrumentPrice("445.5", ZC)).toBe("445'4");
    expect(fmtInstrumentPrice("445.75", ZC)).toBe("445'6");
    expect(fmtInstrumentPrice("445", ZC)).toBe("445'0");
    expect(fmtInstrumentPrice("445.00", ZC)).toBe("445'0");
    expect(fmtInstrumentPrice("0", ZC)).toBe("0'0");
    expect(fmtInstrumentPrice("98765432109876543210.75", ZC)).toBe("98765432109876543210'6");
  });

  it("with an eighth-cent tick, every eighth", () => {
    expect(fmtInstrumentPrice("445.125", ZC8)).toBe("445'1");
    expect(fmtInstrumentPrice("445.375", ZC8)).toBe("445'3");
    expect(fmtInstrumentPrice("445.875", ZC8)).toBe("445'7");
  });

  it("falls back to the padded decimal off the grid or below zero", () => {
    expect(fmtInstrumentPrice("445.125", ZC)).toBe("445.125"); // off ZC's quarter-cent grid
    expect(fmtInstrumentPrice("445.1", ZC)).toBe("445.10");
    expect(fmtInstrumentPrice("445.0625", ZC8)).toBe("445.0625");
    expect(fmtInstrumentPrice("-2.5", ZC)).toBe("-2.50");
  });

  it("prints a change in eighths with its sign", () => {
    expect(fmtInstrumentChange("2.5", ZC)).toBe("+2'4");
    expect(fmtInstrumentChange("-0.25", ZC)).toBe("-0'2");
    expect(fmtInstrumentChange("0", ZC)).toBe("0'0");
    expect(fmtInstrumentChange("-0.1", ZC)).toBe("-0.10");
  });
});

describe("average prices (VWAP, average cost)", () => {
  it("decimal: the tick's decimals plus 2 at most, exactly rounded half away from zero", () => {
    expect(fmtAvgPrice("6850.1666666667", ES)).toBe("6850.1667");
    expect(fmtAvgPrice("6850.123449", ES)).toBe("6850.1234");
    expect(fmtAvgPrice("6850.12345", ES)).toBe("6850.1235"); // a float would say 6850.1234(4999...)
    expect(fmtAvgPrice("-6850.12345", ES)).toBe("-6850.1235"); // away from zero
    expect(fmtAvgPrice("1.00005", ES)).toBe("1.0001");
    expect(fmtAvgPrice("0.99995", ES)).toBe("1.0000"); // carries into the integer
    expect(fmtAvgPrice("9999.99999", ES)).toBe("10000.0000");
    expect(fmtAvgPrice("6850.5", ES)).toBe("6850.50"); // at least the tick's decimals
    expect(fmtAvgPrice("6850.125", ES)).toBe("6850.125");
    expect(fmtAvgPrice("6850", ES)).toBe("6850.00");
    expect(fmtAvgPrice("0", ES)).toBe("0.00");
    expect(fmtAvgPrice("0.000", ES)).toBe("0.00");
    expect(fmtAvgPrice("5.123456789", HG)).toBe("5.123457");
    expect(fmtAvgPrice("1.23456789", undefined)).toBe("1.2346");
    // Exact on values a float cannot hold.
    expect(fmtAvgPrice("123456789012345678901.234567", ES)).toBe("123456789012345678901.2346");
  });

  it("fractional formats: a decimal rounded to 4 places", () => {
    expect(fmtAvgPrice("112.515625", ZN)).toBe("112.5156");
    expect(fmtAvgPrice("112.5078125", ZN)).toBe("112.5078");
    expect(fmtAvgPrice("112.50005", ZN)).toBe("112.5001");
    expect(fmtAvgPrice("112.5", ZN)).toBe("112.5000");
    expect(fmtAvgPrice("445.3333333333", ZC)).toBe("445.3333");
    expect(fmtAvgPrice("445.66665", ZC)).toBe("445.6667");
    expect(fmtAvgPrice("445.25", ZC)).toBe("445.2500");
    expect(fmtAvgPrice("0", ZN)).toBe("0.0000");
    expect(fmtAvgPrice("-0.00005", ZN)).toBe("-0.0001");
    expect(fmtAvgPrice("-0.00001", ZN)).toBe("0.0000"); // no "-0.0000"
  });

  it("null is a dash", () => {
    expect(fmtAvgPrice(null, ES)).toBe("—");
    expect(fmtAvgPrice(undefined, ZN)).toBe("—");
  });
});

describe("nothing throws", () => {
  const infos: Array<Instrument | undefined> = [ES, HG, ZN, ZF, ZC, ZC8, undefined];

  it("null, undefined and empty text are a dash", () => {
    for (const info of infos) {
      for (const f of [fmtInstrumentPrice, fmtInstrumentChange, fmtAvgPrice]) {
        expect(f(null, info)).toBe("—");
        expect(f(undefined, info)).toBe("—");
        expect(f("", info)).toBe("—");
        expect(f("  ", info)).toBe("—");
      }
    }
  });

  it("text that is no decimal is printed as given", () => {
    for (const info of infos) {
      for (const text of GARBAGE) {
        for (const f of [fmtInstrumentPrice, fmtInstrumentChange, fmtAvgPrice]) {
          expect(f(text, info)).toBe(text);
        }
      }
    }
  });

  it("any text, any catalog entry", () => {
    const ticks = ["0.015625", "0.0078125", "0.25", "0.125", "1", "0", "-1", "abc", "", "1e5", "0.00000000001"];
    const formats = ["decimal", "thirty_seconds", "eighths", undefined, "bogus"];
    const texts = ["0", "-0", "+0", "0.0", ".5", "5.", "-.5", "112.515625", "-112.515625", "445.25", "1e400", ...GARBAGE];
    texts.push("9".repeat(400) + ".5", "0." + "0".repeat(300) + "1");
    for (const tick_size of ticks) {
      for (const price_format of formats) {
        const info = { symbol: "X", description: "", tick_size, multiplier: "1", price_format } as Instrument;
        for (const text of texts) {
          for (const f of [fmtInstrumentPrice, fmtInstrumentChange, fmtAvgPrice]) {
            const out = f(text, info);
            expect(typeof out).toBe("string");
            expect(out.length).toBeGreaterThan(0);
          }
        }
      }
    }
  });

  it("odd but valid decimals", () => {
    expect(fmtInstrumentPrice(".5", ZN)).toBe("0-16");
    expect(fmtInstrumentPrice("-0", ZN)).toBe("0-00");
    expect(fmtInstrumentPrice("5.", ZC)).toBe("5'0");
    expect(fmtInstrumentPrice(" 112.5 ", ZN)).toBe("112-16");
    expect(fmtInstrumentPrice(" 6850.5 ", ES)).toBe("6850.50");
    expect(fmtInstrumentChange("-0", ZC)).toBe("0'0");
  });
});

describe("the tables print prices in the instrument's notation", () => {
  const catalog = { ESZ6: ES, ZNH7: ZN, ZCH7: ZC };

  it("market watch: bid, ask, last, change and VWAP", () => {
    const html = renderToStaticMarkup(
      createElement(MarketWatch, {
        instruments: [
          inst("ZNH7", 1, {
            bid: "112.5",
            ask: "112.515625",
            last: "112.515625",
            change: "-0.265625",
            vwap: "112.5081234",
          }),
          inst("ZCH7", 2, { bid: "445.25", ask: "445.5", last: "445", change: "2.5", vwap: "445.3333333" }),
          inst("ESZ6", 3, { bid: "6850.5", ask: "6850.75", last: "6850.5", change: "0.25", vwap: "6850.1666666667" }),
        ],
        sparks: {},
        ticks: {},
        catalog,
        selected: null,
        onSelect: () => {},
        nowMs: 0,
        connected: false,
        staleMs: 5000,
      }),
    );
    const cell = (symbol: string, field: string) => {
      const row = new RegExp(`<tr[^>]*data-symbol="${symbol}"[\\s\\S]*?</tr>`).exec(html)?.[0] ?? "";
      return new RegExp(`data-field="${field}"[^>]*>([^<]*)<`).exec(row)?.[1];
    };
    expect([cell("ZNH7", "bid"), cell("ZNH7", "ask"), cell("ZNH7", "last")]).toEqual(["112-16", "112-16+", "112-16+"]);
    expect([cell("ZNH7", "change"), cell("ZNH7", "vwap")]).toEqual(["-0-08+", "112.5081"]);
    expect([cell("ZCH7", "bid"), cell("ZCH7", "ask"), cell("ZCH7", "last")]).toEqual(["445&#x27;2", "445&#x27;4", "445&#x27;0"]);
    expect([cell("ZCH7", "change"), cell("ZCH7", "vwap")]).toEqual(["+2&#x27;4", "445.3333"]);
    expect([cell("ESZ6", "bid"), cell("ESZ6", "change"), cell("ESZ6", "vwap")]).toEqual(["6850.50", "+0.25", "6850.1667"]);
  });

  it("positions: the average price", () => {
    const html = renderToStaticMarkup(
      createElement(Positions, {
        positions: [
          pos("ACC1", "ZNH7", 1, { avg_price: "112.5123456" }),
          pos("ACC1", "ESZ6", 2, { avg_price: "6850.1666666667" }),
        ],
        accounts: { ACC1: 2 },
        catalog,
      }),
    );
    expect(html).toMatch(/data-position="ACC1:ZNH7"[\s\S]*?title="112.5123456">112.5123</);
    expect(html).toMatch(/data-position="ACC1:ESZ6"[\s\S]*?title="6850.1666666667">6850.1667</);
  });
});
