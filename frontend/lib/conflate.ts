// Runs `publish` at most once per animation frame, however often `schedule` is called.

export type Raf = (callback: (time: number) => void) => number;
export type Caf = (handle: number) => void;

export interface FrameConflator {
  schedule(): void;
  /** Publishes now if something is pending (e.g. before a teardown). */
  flush(): void;
  cancel(): void;
  readonly pending: boolean;
}

/**
 * `minIntervalMs` > 0 also spaces publishes at least that far apart (a screen a trader reads
 * need not repaint 60 times a second at 200 updates a second): a schedule within the interval
 * waits for its end, then for the next frame.
 */
export function createFrameConflator(
  publish: () => void,
  raf?: Raf,
  caf?: Caf,
  minIntervalMs = 0,
  now: () => number = Date.now,
): FrameConflator {
  const request: Raf =
    raf ??
    (typeof requestAnimationFrame === "function"
      ? requestAnimationFrame.bind(globalThis)
      : (cb) => setTimeout(() => cb(Date.now()), 16) as unknown as number);
  const cancelFrame: Caf =
    caf ??
    (typeof cancelAnimationFrame === "function"
      ? cancelAnimationFrame.bind(globalThis)
      : (h) => clearTimeout(h as unknown as ReturnType<typeof setTimeout>));
  let handle: number | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let last = Number.NEGATIVE_INFINITY;
  const run = () => {
    handle = null;
    last = now();
    publish();
  };
  const cancel = () => {
    if (handle !== null) cancelFrame(handle);
    if (timer !== null) clearTimeout(timer);
    handle = null;
    timer = null;
  };
  return {
    schedule() {
      if (handle !== null || timer !== null) return;
      // Never longer than one interval: a wall clock stepped back (NTP, a resumed VM) must not
      // freeze the screen for the size of the step.
      const wait = Math.min(minIntervalMs, last + minIntervalMs - now());
      if (wait <= 0) {
        handle = request(run);
        return;
      }
      timer = setTimeout(() => {
        timer = null;
        handle = request(run);
      }, wait);
    },
    flush() {
      if (handle === null && timer === null) return;
      cancel();
      run();
    },
    cancel,
    get pending() {
      return handle !== null || timer !== null;
    },
  };
}
