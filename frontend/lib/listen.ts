// The subscribe half of the feeds' listener sets (React's useSyncExternalStore and the `on…` calls).

/** Adds `listener` to `listeners`; the function returned takes it out again. */
export function listen<L>(listeners: Set<L>, listener: L): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
