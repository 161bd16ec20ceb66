import { describe, expect, it } from "vitest";
import { addDec, compareDec, decimalsOf, parseDec, roundDec, signDec, sumDec } from "@/lib/decimal";
import { fmtMoney, fmtPct, fmtPrice, groupDec, padDec } from "@/lib/format";
import { accountTotals } from "@/lib/positions";
import { pos } from "./helpers";

describe("decimal strings", () => {
  it("parses the server's decimals exactly", () => {
    expect(parseDec("6850.25")).toEqual({ units: 685025n, scale: 2 });
    expect(parseDec("-0.0036")).toEqual({ units: -36n, scale: 4 });
    expect(parseDec("12")).toEqual({ units: 12n, scale: 0 });
    expect(() => parseDec("1e5")).toThrow();
    expect(() => parseDec("")).toThrow();
  });

  it("sums exactly where floats drift", () => {
    expect(0.1 + 0.2).not.toBe(0.3);
    expect(addDec("0.1", "0.2")).toBe("0.3");
    expect(sumDec(["0.1", "0.2", "0.3"])).toBe("0.6");
    // Ten thousand cents: float addition drifts, BigInt does not.
    const cents = Array.from({ length: 10000 }, () => "0.01");
    expect(cents.reduce((a, b) => a + parseFloat(b), 0)).not.toBe(100);
    expect(sumDec(cents)).toBe("100.00");
  });

  it("mixes scales and signs", () => {
    expect(sumDec(["-296.875", "10", "150", "131.25"])).toBe("-5.625");
    expect(sumDec(["1.15995", "-1.16"])).toBe("-0.00005");
    expect(sumDec([])).toBe("0");
    expect(sumDec([null, "2.5", undefined])).toBe("2.5");
    expect(addDec("-0.5", "0.5")).toBe("0.0");
  });

  it("keeps precision beyond float range", () => {
    expect(sumDec(["90071992547409.93", "0.01", "0.01"])).toBe("90071992547409.95");
    expect(sumDec(["123456789.0123456789", "0.0000000001"])).toBe("123456789.0123456790");
  });

  it("compares, signs and rounds exactly", () => {
    expect(compareDec("1.10", "1.1")).toBe(0);
    expect(compareDec("-2", "1")).toBe(-1);
    expect(signDec("-0.000")).toBe(0);
    expect(signDec("-0.001")).toBe(-1);
    expect(signDec(null)).toBe(0);
    expect(roundDec("6850.1666666667", 4)).toBe("6850.1667");
    expect(roundDec("-296.875", 2)).toBe("-296.88");
    expect(roundDec("1.005", 2)).toBe("1.01"); // a float would say 1.00
    expect(roundDec("2.5", 0)).toBe("3");
    expect(roundDec("1.2", 3)).toBe("1.200");
  });

  it("formats for display without changing the value", () => {
    expect(decimalsOf("0.015625")).toBe(6);
    expect(decimalsOf("1")).toBe(0);
    expect(padDec("6850.5", 2)).toBe("6850.50");
    expect(padDec("112.59375", 6)).toBe("112.593750");
    expect(padDec("1.123", 2)).toBe("1.123");
    expect(fmtPrice(null, 2)).toBe("—");
    expect(fmtPrice("46797", 0)).toBe("46797");
    expect(groupDec("-1234567.891")).toBe("-1,234,567.891");
    expect(fmtMoney("-56405")).toBe("-56,405.00");
    expect(fmtPct("-0.0129")).toBe("-0.01%");
    expect(fmtPct("0.0036")).toBe("0.00%");
    expect(fmtPct("0.0561")).toBe("+0.06%");
  });

  it("totals positions per account exactly", () => {
    const totals = accountTotals([
      pos("ACC2", "ESZ6", 1, { realized_pnl: "0.1", unrealized_pnl: "0.2" }),
      pos("ACC1", "ESZ6", 1, { realized_pnl: "-20", unrealized_pnl: "131.25" }),
      pos("ACC1", "6EZ6", 1, { realized_pnl: "0", unrealized_pnl: "-296.875" }),
      pos("ACC1", "CLF7", 1, { realized_pnl: "10.005", unrealized_pnl: "0.0000000001", net_qty: 0 }),
    ]);
    expect(totals.map((t) => t.account)).toEqual(["ACC1", "ACC2"]);
    const acc1 = totals[0];
    expect(acc1.realized).toBe("-9.995");
    expect(acc1.unrealized).toBe("-165.6249999999");
    expect(acc1.total).toBe("-175.6199999999");
    expect(acc1.open).toBe(2);
    expect(totals[1].total).toBe("0.3");
  });
});
