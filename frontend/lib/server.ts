// Server-side reads of the ttpulse API for the first render (server components only).

import type { Instrument, Snapshot } from "./types";

export function apiUrl(): string {
  return (process.env.TTPULSE_API_URL || "http://127.0.0.1:8080").replace(/\/+$/, "");
}

export async function fetchJson<T>(path: string, timeoutMs = 3000): Promise<T> {
  const res = await fetch(`${apiUrl()}${path}`, {
    cache: "no-store",
    signal: AbortSignal.timeout(timeoutMs),
    headers: { accept: "application/json" },
  });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

export interface InitialData {
  snapshot: Snapshot | null;
  catalog: Instrument[];
  error: string | null;
}

export async function loadInitialData(): Promise<InitialData> {
  const [snapshot, catalog] = await Promise.allSettled([
    fetchJson<Snapshot>("/api/snapshot"),
    fetchJson<Instrument[]>("/api/instruments"),
  ]);
  const error =
    snapshot.status === "rejected"
      ? `the ttpulse API (${apiUrl()}) did not answer: ${String(snapshot.reason?.message ?? snapshot.reason)}`
      : null;
  return {
    snapshot: snapshot.status === "fulfilled" ? snapshot.value : null,
    catalog: catalog.status === "fulfilled" ? catalog.value : [],
    error,
  };
}
