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

export function createFrameConflator(publish: () => void, raf?: Raf, caf?: Caf): FrameConflator {
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
  return {
    schedule() {
      if (handle !== null) return;
      handle = request(() => {
        handle = null;
        publish();
      });
    },
    flush() {
      if (handle === null) return;
      cancelFrame(handle);
      handle = null;
      publish();
    },
    cancel() {
      if (handle !== null) cancelFrame(handle);
      handle = null;
    },
    get pending() {
      return handle !== null;
    },
  };
}
