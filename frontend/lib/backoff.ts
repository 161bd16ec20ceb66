// Reconnect delays: exponential backoff with "equal jitter" (half fixed, half random), capped.
// attempt 0 → 125–250 ms, 1 → 250–500 ms, 2 → 500–1000 ms, ... never more than capMs.

export interface BackoffOptions {
  baseMs?: number;
  capMs?: number;
  /** Returns a number in [0, 1); Math.random by default. */
  random?: () => number;
}

export const BACKOFF_BASE_MS = 250;
export const BACKOFF_CAP_MS = 5000;

export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const base = options.baseMs ?? BACKOFF_BASE_MS;
  const cap = options.capMs ?? BACKOFF_CAP_MS;
  const random = options.random ?? Math.random;
  const ceiling = Math.min(cap, base * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
