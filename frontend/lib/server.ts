// Server-side reads of the ttpulse API for the first render (server components only).

import { cookies, headers } from "next/headers";
import type { BlotterInit, FillsPage } from "./blotter";
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

/** Fills per account in the first render's blotter, and the most accounts it reads. */
export const FIRST_FILLS_PAGE = 50;
export const FIRST_FILLS_ACCOUNTS = 25;

export interface InitialData {
  snapshot: Snapshot | null;
  /** The blotter's first pages, read after the snapshot (null without one). */
  fills: BlotterInit | null;
  catalog: Instrument[];
  error: string | null;
  /** The API needs a token for this page and the request brought none (or a refused one). */
  signInRequired: boolean;
  /** The request brought a credential the API accepted: the page may lose it (expiry). */
  signedIn: boolean;
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
  const shown = snapshot.status === "fulfilled" && !signInRequired ? snapshot.value : null;
  return {
    snapshot: shown,
    fills: shown ? await loadFirstFills(shown, authorization) : null,
    catalog: catalog.status === "fulfilled" ? catalog.value : [],
    error,
    signInRequired,
    signedIn: authorization != null && !signInRequired,
  };
}

/**
 * The newest fills of each account in the snapshot, read *after* it: so each page holds every
 * fill the snapshot counted since the page's oldest row, and the live stream (which starts at a
 * later snapshot) is joined by the client's `recover` without a gap. An account whose page
 * cannot be read is left out: the client reads it once it is live.
 */
async function loadFirstFills(snapshot: Snapshot, authorization: string | null): Promise<BlotterInit> {
  const lanes: Record<string, number> = {};
  const accounts = new Set<string>();
  for (const a of snapshot.accounts ?? []) {
    if (!a.symbol) continue;
    lanes[`fills:${a.account}:${a.symbol}`] = a.fill_seq;
    accounts.add(a.account);
  }
  const chosen = [...accounts].sort().slice(0, FIRST_FILLS_ACCOUNTS);
  const pages = await Promise.allSettled(
    chosen.map((account) =>
      fetchJson<FillsPage>(`/api/fills?account=${encodeURIComponent(account)}&limit=${FIRST_FILLS_PAGE}`, 3000, authorization),
    ),
  );
  const init: BlotterInit = { pages: {}, lanes };
  pages.forEach((page, i) => {
    if (page.status === "fulfilled") init.pages[chosen[i]] = page.value;
  });
  return init;
}
