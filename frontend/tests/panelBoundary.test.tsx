// @vitest-environment happy-dom
import { act, createElement, useState } from "react";
import { describe, expect, it, vi } from "vitest";
import PanelBoundary from "@/components/PanelBoundary";
import { mountPoint } from "./componentHelpers";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

let bad = true;
function Fragile() {
  if (bad) throw new Error("unparsable price `1e400`");
  return createElement("span", { id: "ok" }, "fine");
}

describe("PanelBoundary", () => {
  it("keeps a panel's failure inside the panel, says why, and can try again", () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const error = vi.spyOn(console, "error").mockImplementation(() => {});
    const { container, root } = mountPoint();
    let bump: () => void = () => {};
    function Screen() {
      const [n, setN] = useState(0);
      bump = () => setN(n + 1);
      return createElement(
        "main",
        null,
        createElement(PanelBoundary, { name: "fills", children: createElement(Fragile) }),
        createElement("p", { id: "other" }, `other panel ${n}`),
      );
    }
    act(() => root.render(createElement(Screen)));
    const alert = container.querySelector("[data-testid=panel-error]");
    expect(alert?.textContent).toContain("The fills panel could not show the latest data: unparsable price `1e400`");
    // The rest of the screen still renders and updates.
    act(() => bump());
    expect(container.querySelector("#other")?.textContent).toBe("other panel 1");
    // Once the data is good again, "Try again" brings the panel back.
    bad = false;
    act(() => (container.querySelector("[data-testid=panel-error] button") as HTMLButtonElement).click());
    expect(container.querySelector("#ok")?.textContent).toBe("fine");
    act(() => root.unmount());
    warn.mockRestore();
    error.mockRestore();
  });
});
