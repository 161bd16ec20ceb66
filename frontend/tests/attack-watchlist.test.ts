import { describe, expect, it } from "vitest";
import { MAX_NAME, createList, defaultWatchlists, parseWatchlists, setActive, addSymbol } from "@/lib/watchlist";

describe("attack: list names at the length bound", () => {
  it("a second list created with the same 40-character name survives a reload (or another tab reading it)", () => {
    const catalog = ["ESZ6", "NQZ6", "ZNH7"];
    const name = "Rates and bonds: the curve, front to end"; // 40 characters, what the input allows
    expect(name.length).toBe(MAX_NAME);
    let w = defaultWatchlists(catalog);
    w = createList(w, name);
    w = addSymbol(w, "ESZ6");
    w = createList(w, name); // same name again: the new list gets " 2"
    w = addSymbol(w, "ZNH7");
    expect(w.lists.length).toBe(3);
    const reread = parseWatchlists(JSON.stringify(w), catalog);
    // Expected: every list saved is read back, with its symbols, and the active one stays active.
    expect(reread.lists.length).toBe(3);
    expect(reread.lists.map((l) => l.symbols)).toEqual(w.lists.map((l) => l.symbols));
    expect(reread.active).toBe(w.active);
  });

  it("the numbered name createList picks is itself a valid stored name (never longer than MAX_NAME)", () => {
    let w = defaultWatchlists(["ESZ6"]);
    const name = "x".repeat(39);
    w = createList(w, name);
    w = createList(w, name);
    w = setActive(w, w.lists[2].name);
    // Expected: names stay within the bound that reading enforces.
    for (const l of w.lists) expect(l.name.length).toBeLessThanOrEqual(MAX_NAME);
  });
});
