// Server-side reads of the ttpulse API for the first render (server components only).

import { cookies, headers } from "next/headers";
import type { Instrument, Snapshot } from "./types";

/** The cookie a signed-in browser carries its ttpulse token in (set by the sign-in proxy). */
export const TOKEN_COOKIE = "ttpulse_token";

/**
 * The user's credential for the API, from the request the page answers: the `Authorization`
 * header an auth proxy (oauth2-proxy or any OIDC front) set, else the `ttpulse_token` cookie.
 */
export async function userAuthorization(): Promise<string | null> {
  const header = (await headers()).get("authorization");
  if (header && /^bearer /i.test(header)) return header;
  const tokens = (await cookies()).getAll(TOKEN_COOKIE);
  // Two token cookies (one planted by a sibling site?) are never guessed between: the API
  // refuses this one, and the page asks to sign in.
  if (tokens.length > 1) return "Bearer ambiguous-two-token-cookies";
  return tokens[0]?.value ? `Bearer ${tokens[0].value}` : null;
}

/** An API answer that is not 2xx; `status` tells a refusal (401) from an outage. */
export class ApiStatusError extends Error {
  constructor(
    public readonly path: string,
    public readonly status: number,
  ) {
    super(`${path}: HTTP ${status}`);
  }
}

export function apiUrl(): string {
  return (process.env.TTPULSE_API_URL || "http://127.0.0.1:8080").replace(/\/+$/, "");
}

export async function fetchJson<T>(path: string, timeoutMs = 3000, authorization: string | null = null): Promise<T> {
  const res = await fetch(`${apiUrl()}${path}`, {
    cache: "no-store",
    signal: AbortSignal.timeout(timeoutMs),
    headers: { accept: "application/json", ...(authorization ? { authorization } : {}) },
  });
  if (!res.ok) throw new ApiStatusError(path, res.status);
  return (await res.json()) as T;
}

export interface InitialData {
  snapshot: Snapshot | null;
  catalog: Instrument[];
  error: string | null;
  /** The API needs a token for this page and the request brought none (or a refused one). */
  signInRequired: boolean;
}

const refused = (r: PromiseSettledResult<unknown>) =>
  r.status === "rejected" && r.reason instanceof ApiStatusError && (r.reason.status === 401 || r.reason.status === 403);

/**
 * What the first render needs, read with the user's own credential: the snapshot holds only
 * the accounts the user's token grants. When the API refuses (401), or it asks for a token for
 * account data and the request brought none, the page shows a sign-in state instead: never
 * another account's data.
 */
export async function loadInitialData(): Promise<InitialData> {
  const authorization = await userAuthorization();
  const [snapshot, catalog, accounts] = await Promise.allSettled([
    fetchJson<Snapshot>("/api/snapshot", 3000, authorization),
    fetchJson<Instrument[]>("/api/instruments", 3000, authorization),
    // Whether account data needs a token: 401 without one when authentication is on.
    authorization ? Promise.resolve(null) : fetchJson<unknown>("/api/positions?account=_signin_probe", 3000, null),
  ]);
  const signInRequired = refused(snapshot) || (!authorization && refused(accounts));
  const error =
    snapshot.status === "rejected" && !signInRequired
      ? `the ttpulse API (${apiUrl()}) did not answer: ${String(snapshot.reason?.message ?? snapshot.reason)}`
      : null;
  return {
    snapshot: snapshot.status === "fulfilled" && !signInRequired ? snapshot.value : null,
    catalog: catalog.status === "fulfilled" ? catalog.value : [],
    error,
    signInRequired,
  };
}
