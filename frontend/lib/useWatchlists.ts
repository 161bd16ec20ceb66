"use client";
// The watchlists, read from the browser's storage after hydration (the server renders the
// whole catalog: it cannot see the browser's lists), saved on every change, and kept in step
// with the user's other tabs.

import { useCallback, useEffect, useState } from "react";
import { STORAGE_KEY, activeSymbols, loadWatchlists, saveWatchlists, type Watchlists } from "./watchlist";

export const browserStorage = (): Storage | null => {
  try {
    return typeof localStorage === "undefined" ? null : localStorage;
  } catch {
    return null; // storage refused (e.g. a sandboxed frame)
  }
};

/**
 * The active list's symbols as stored, read synchronously (for the socket's first subscribe:
 * it never renders, so it cannot upset hydration); undefined on the server or without a catalog.
 */
export function storedActiveSymbols(catalog: string[]): string[] | undefined {
  if (typeof window === "undefined" || catalog.length === 0) return undefined;
  return activeSymbols(loadWatchlists(browserStorage(), catalog));
}

/** null until the browser's lists are read (and while the catalog is unknown). */
export function useWatchlists(catalog: string[]): [Watchlists | null, (change: (w: Watchlists) => Watchlists) => void] {
  const [lists, setLists] = useState<Watchlists | null>(null);
  useEffect(() => {
    if (catalog.length === 0) return;
    setLists(loadWatchlists(browserStorage(), catalog));
    const onStorage = (e: StorageEvent) => {
      if (e.key === STORAGE_KEY) setLists(loadWatchlists(browserStorage(), catalog));
    };
    window.addEventListener("storage", onStorage);
    return () => window.removeEventListener("storage", onStorage);
  }, [catalog]);
  const update = useCallback((change: (w: Watchlists) => Watchlists) => {
    setLists((current) => {
      if (!current) return current;
      const next = change(current);
      if (next !== current) saveWatchlists(browserStorage(), next);
      return next;
    });
  }, []);
  return [lists, update];
}
