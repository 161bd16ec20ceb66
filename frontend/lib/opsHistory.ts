// The ops page's memory: the last minutes of each figure it shows, one sample per scrape, so
// that a trend is visible without Grafana. Plain data; bounded.

/** 5 minutes of 2 s scrapes. */
export const HISTORY_POINTS = 150;

export class OpsHistory {
  private readonly series = new Map<string, (number | null)[]>();
  private readonly times: number[] = [];

  constructor(readonly max = HISTORY_POINTS) {}

  /** One scrape's figures (null: not known this time, e.g. no observations in the window). */
  push(at: number, figures: Record<string, number | null>): void {
    this.times.push(at);
    const names = new Set([...this.series.keys(), ...Object.keys(figures)]);
    for (const name of names) {
      let values = this.series.get(name);
      if (!values) {
        values = new Array(this.times.length - 1).fill(null);
        this.series.set(name, values);
      }
      const v = figures[name];
      values.push(v != null && Number.isFinite(v) ? v : null);
    }
    if (this.times.length > this.max) {
      const drop = this.times.length - this.max;
      this.times.splice(0, drop);
      for (const values of this.series.values()) values.splice(0, drop);
    }
  }

  /** The known values of a figure, oldest first (gaps left out). */
  values(name: string): number[] {
    return (this.series.get(name) ?? []).filter((v): v is number => v != null);
  }

  /** Lowest and highest known value, or null. */
  range(name: string): { min: number; max: number } | null {
    const values = this.values(name);
    if (values.length === 0) return null;
    return { min: Math.min(...values), max: Math.max(...values) };
  }

  /** Seconds covered by the samples kept. */
  get spanSeconds(): number {
    return this.times.length < 2 ? 0 : Math.round((this.times[this.times.length - 1] - this.times[0]) / 1000);
  }

  get length(): number {
    return this.times.length;
  }
}
