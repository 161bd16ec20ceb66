import { memo } from "react";

export interface SparklineProps {
  values: number[] | undefined;
  width?: number;
  height?: number;
}

/** A tiny SVG line of recent prices, green when up over the window, red when down. */
function SparklineImpl({ values, width = 84, height = 20 }: SparklineProps) {
  if (!values || values.length < 2) {
    return <svg className="spark" width={width} height={height} aria-hidden="true" />;
  }
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const span = max - min || 1;
  const pad = 2;
  const step = (width - pad * 2) / (values.length - 1);
  const points = values
    .map((v, i) => `${(pad + i * step).toFixed(1)},${(pad + (height - pad * 2) * (1 - (v - min) / span)).toFixed(1)}`)
    .join(" ");
  const first = values[0];
  const last = values[values.length - 1];
  const trend = last > first ? "up" : last < first ? "down" : "flat";
  return (
    <svg className={`spark spark-${trend}`} width={width} height={height} viewBox={`0 0 ${width} ${height}`} aria-hidden="true">
      <polyline points={points} fill="none" strokeWidth="1.25" strokeLinejoin="round" strokeLinecap="round" />
    </svg>
  );
}

export const Sparkline = memo(SparklineImpl);
