import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";
import MarketWatch from "@/components/MarketWatch";
import Positions from "@/components/Positions";
import { fmtAvgPrice, fmtInstrumentChange, fmtInstrumentPrice } from "@/lib/format";
import type { Instrument } from "@/lib/types";
import { inst, pos } from "./helpers";

// The default catalog's entries (domain/src/instruments.rs), as GET /api/instruments gives them.
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

type Formatter = typeof fmtInstrumentPrice;
type Case = [text: string | null | undefined, info: Instrument | undefined, printed: string];

/** Checks each case in order: `format(text, info)` prints `printed` (a failure names the text). */
function expectPrints(format: Formatter, cases: Case[]) {
  for (const [text, info, printed] of cases) expect(format(text, info), `${format.name}(${JSON.stringify(text)})`).toBe(printed);
}

const GARBAGE = ["abc", "1e400", "1e5", "NaN", "Infinity", "-", ".", "1.2.3", "0x10", "12,5", " 1 2 ", "--1", "💥"];

describe("decimal instruments", () => {
  it("pad to the tick's decimals, as before", () => {
    expectPrints(fmtInstrumentPrice, [
      ["6850.5", ES, "6850.50"],
      ["6850", ES, "6850.00"],
      ["6850.25", ES, "6850.25"],
      ["5.1", HG, "5.1000"],
      ["0", ES, "0.00"],
      ["-1.5", ES, "-1.50"],
      // Never rounds or truncates what the server sent.
      ["6850.123", ES, "6850.123"],
      ["123456789012345678901234567890.5", ES, "123456789012345678901234567890.50"],
    ]);
  });

  it("a missing catalog entry or price_format (an older server) means decimal", () => {
    const future = { ...ZN, price_format: "sixty_fourths" } as unknown as Instrument;
    expectPrints(fmtInstrumentPrice, [
      ["112.515625", { ...ZN, price_format: undefined }, "112.515625"],
      ["445.25", { ...ZC, price_format: undefined }, "445.25"],
      ["6850.5", undefined, "6850.50"],
      // An unknown format from a newer server is printed as a decimal too.
      ["112.515625", future, "112.515625"],
    ]);
  });

  it("changes keep their sign and padding", () => {
    expectPrints(fmtInstrumentChange, [
      ["0.25", ES, "+0.25"],
      ["-1", ES, "-1.00"],
      ["0", ES, "0.00"],
      [null, ES, "—"],
    ]);
  });
});

describe("thirty_seconds (bond futures)", () => {
  it("prints handle-32nds, two digits, + for a half 32nd", () => {
    expectPrints(fmtInstrumentPrice, [
      ["112.5", ZN, "112-16"],
      ["112.500000", ZN, "112-16"],
      ["112.515625", ZN, "112-16+"],
      ["112.15625", ZN, "112-05"],
      ["112", ZN, "112-00"],
      ["112.015625", ZN, "112-00+"],
      ["112.96875", ZN, "112-31"],
      ["112.984375", ZN, "112-31+"],
      ["0", ZN, "0-00"],
      ["0.015625", ZN, "0-00+"],
      ["+112.5", ZN, "112-16"],
      ["1234567890123456789.515625", ZN, "1234567890123456789-16+"],
    ]);
  });

  it("with a quarter-32nd tick, a third digit 0/2/5/7 gives the quarter", () => {
    expectPrints(fmtInstrumentPrice, [
      ["112.5", ZF, "112-160"],
      ["112.5078125", ZF, "112-162"],
      ["112.515625", ZF, "112-165"],
      ["112.5234375", ZF, "112-167"],
      ["108.0390625", ZF, "108-012"],
    ]);
  });

  it("falls back to the padded decimal where 32nds cannot show the price exactly", () => {
    // Off ZN's 1/64 grid (a quarter 32nd), and off any 32nd grid.
    expectPrints(fmtInstrumentPrice, [
      ["112.5078125", ZN, "112.5078125"],
      ["112.51", ZN, "112.510000"],
      ["112.1", ZF, "112.1000000"],
      // Negative.
      ["-0.5", ZN, "-0.500000"],
      ["-112.515625", ZN, "-112.515625"],
      // A tick the notation cannot express (eighths of a 32nd, or a decimal tick), or no tick.
      ["112.5", { ...ZN, tick_size: "0.00390625" }, "112.50000000"],
      ["112.5", { ...ZN, tick_size: "0.01" }, "112.50"],
      ["112.5", { ...ZN, tick_size: "0" }, "112.5"],
      ["112.5", { ...ZN, tick_size: "-0.015625" }, "112.500000"],
      ["112.5", { ...ZN, tick_size: "abc" }, "112.5"],
      ["112.5", { ...ZN, tick_size: "" }, "112.50"],
    ]);
  });

  it("prints a change in 32nds with its sign", () => {
    expectPrints(fmtInstrumentChange, [
      ["0.25", ZN, "+0-08"],
      ["-0.265625", ZN, "-0-08+"],
      ["-1.03125", ZN, "-1-01"],
      ["0", ZN, "0-00"],
      ["0.0078125", ZF, "+0-002"],
      // Off the grid: the signed decimal.
      ["0.01", ZN, "+0.010000"],
      ["-0.0078125", ZN, "-0.0078125"],
    ]);
  });
});

describe("eighths (grains)", () => {
  it("prints cents'eighths", () => {
    expectPrints(fmtInstrumentPrice, [
      ["445.25", ZC, "445'2"],
      ["445.5", ZC, "445'4"],
      ["445.75", ZC, "445'6"],
      ["445", ZC, "445'0"],
      ["445.00", ZC, "445'0"],
      ["0", ZC, "0'0"],
      ["98765432109876543210.75", ZC, "98765432109876543210'6"],
    ]);
  });

  it("with an eighth-cent tick, every eighth", () => {
    expectPrints(fmtInstrumentPrice, [
      ["445.125", ZC8, "445'1"],
      ["445.375", ZC8, "445'3"],
      ["445.875", ZC8, "445'7"],
    ]);
  });

  it("falls back to the padded decimal off the grid or below zero", () => {
    expectPrints(fmtInstrumentPrice, [
      ["445.125", ZC, "445.125"], // off ZC's quarter-cent grid
      ["445.1", ZC, "445.10"],
      ["445.0625", ZC8, "445.0625"],
      ["-2.5", ZC, "-2.50"],
    ]);
  });

  it("prints a change in eighths with its sign", () => {
    expectPrints(fmtInstrumentChange, [
      ["2.5", ZC, "+2'4"],
      ["-0.25", ZC, "-0'2"],
      ["0", ZC, "0'0"],
      ["-0.1", ZC, "-0.10"],
    ]);
  });
});

describe("average prices (VWAP, average cost)", () => {
  it("decimal: the tick's decimals plus 2 at most, exactly rounded half away from zero", () => {
    expectPrints(fmtAvgPrice, [
      ["6850.1666666667", ES, "6850.1667"],
      ["6850.123449", ES, "6850.1234"],
      ["6850.12345", ES, "6850.1235"], // a float would say 6850.1234(4999...)
      ["-6850.12345", ES, "-6850.1235"], // away from zero
      ["1.00005", ES, "1.0001"],
      ["0.99995", ES, "1.0000"], // carries into the integer
      ["9999.99999", ES, "10000.0000"],
      ["6850.5", ES, "6850.50"], // at least the tick's decimals
      ["6850.125", ES, "6850.125"],
      ["6850", ES, "6850.00"],
      ["0", ES, "0.00"],
      ["0.000", ES, "0.00"],
      ["5.123456789", HG, "5.123457"],
      ["1.23456789", undefined, "1.2346"],
      // Exact on values a float cannot hold.
      ["123456789012345678901.234567", ES, "123456789012345678901.2346"],
    ]);
  });

  it("fractional formats: a decimal rounded to 4 places", () => {
    expectPrints(fmtAvgPrice, [
      ["112.515625", ZN, "112.5156"],
      ["112.5078125", ZN, "112.5078"],
      ["112.50005", ZN, "112.5001"],
      ["112.5", ZN, "112.5000"],
      ["445.3333333333", ZC, "445.3333"],
      ["445.66665", ZC, "445.6667"],
      ["445.25", ZC, "445.2500"],
      ["0", ZN, "0.0000"],
      ["-0.00005", ZN, "-0.0001"],
      ["-0.00001", ZN, "0.0000"], // no "-0.0000"
    ]);
  });

  it("null is a dash", () => {
    expect(fmtAvgPrice(null, ES)).toBe("—");
    expect(fmtAvgPrice(undefined, ZN)).toBe("—");
  });
});

describe("nothing throws", () => {
  const infos: Array<Instrument | undefined> = [ES, HG, ZN, ZF, ZC, ZC8, undefined];
  const formatters = [fmtInstrumentPrice, fmtInstrumentChange, fmtAvgPrice];

  it("null, undefined and empty text are a dash", () => {
    for (const info of infos) {
      for (const f of formatters) {
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
        for (const f of formatters) {
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
          for (const f of formatters) {
            const out = f(text, info);
            expect(typeof out).toBe("string");
            expect(out.length).toBeGreaterThan(0);
          }
        }
      }
    }
  });

  it("odd but valid decimals", () => {
    expectPrints(fmtInstrumentPrice, [
      [".5", ZN, "0-16"],
      ["-0", ZN, "0-00"],
      ["5.", ZC, "5'0"],
      [" 112.5 ", ZN, "112-16"],
      [" 6850.5 ", ES, "6850.50"],
    ]);
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
