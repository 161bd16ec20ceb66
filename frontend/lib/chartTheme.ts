// The dashboard's look for lightweight-charts, shared by the candle and P&L charts. The library
// is loaded on the client only (a dynamic import), so its module is passed in.

import type * as Charts from "lightweight-charts";
import type { DeepPartial, TimeChartOptions } from "lightweight-charts";

export function chartOptions(
  lc: Pick<typeof Charts, "ColorType" | "CrosshairMode">,
  { rightPriceScale = {}, timeScale = {} }: Pick<DeepPartial<TimeChartOptions>, "rightPriceScale" | "timeScale"> = {},
): DeepPartial<TimeChartOptions> {
  return {
    autoSize: true,
    layout: {
      background: { type: lc.ColorType.Solid, color: "transparent" },
      textColor: "#9aa7b4",
      fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, 'Liberation Mono', monospace",
      fontSize: 11,
    },
    grid: { vertLines: { color: "#1a222c" }, horzLines: { color: "#1a222c" } },
    rightPriceScale: { borderColor: "#263241", ...rightPriceScale },
    timeScale: { borderColor: "#263241", timeVisible: true, secondsVisible: true, rightOffset: 3, ...timeScale },
    crosshair: { mode: lc.CrosshairMode.Normal },
  };
}
