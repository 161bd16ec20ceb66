import type { Interval } from "@/lib/types";

const INTERVALS: readonly Interval[] = ["1s", "1m"];
export const INTERVAL_LABEL: Record<Interval, string> = { "1s": "1 s", "1m": "1 min" };

/** The 1 s / 1 min buttons of a chart; the one shown is pressed. */
export function IntervalSwitch({
  className,
  label,
  value,
  onChange,
}: {
  className: string;
  /** What the group chooses, for assistive technology. */
  label: string;
  value: Interval;
  onChange: (interval: Interval) => void;
}) {
  return (
    <div className={className} role="group" aria-label={label}>
      {INTERVALS.map((iv) => (
        <button key={iv} type="button" className={iv === value ? "active" : ""} aria-pressed={iv === value} onClick={() => onChange(iv)}>
          {INTERVAL_LABEL[iv]}
        </button>
      ))}
    </div>
  );
}
