// What a signed-in dashboard does when its sign-in ends (the live feed is closed with 4001, or
// its credential is refused): reload, so that the request goes through the sign-in proxy again.
// The proxy then renews the token (the page renders signed in and goes live again) or sends the
// user to sign in; without a valid token the server render is the sign-in page.

/** Where the time of the last such reload is kept (per tab). */
export const RELOAD_KEY = "ttpulse.signInReloadAt";
/**
 * No second reload within this time: a proxy that hands back a token about to expire would
 * otherwise reload the page in a loop. The page then says the sign-in ended and offers a button.
 */
export const RELOAD_GUARD_MS = 30_000;

export interface ReloadDeps {
  storage?: Pick<Storage, "getItem" | "setItem"> | null;
  reload?: () => void;
  now?: () => number;
}

/** Reloads the page for a fresh sign-in, unless this tab did so less than 30 s ago. */
export function reloadForSignIn({ storage, reload, now = Date.now }: ReloadDeps = {}): boolean {
  const store = storage === undefined ? sessionStorageOrNull() : storage;
  const t = now();
  const last = Number(store?.getItem(RELOAD_KEY) ?? NaN);
  if (Number.isFinite(last) && t - last >= 0 && t - last < RELOAD_GUARD_MS) return false;
  try {
    store?.setItem(RELOAD_KEY, String(t));
  } catch {
    /* storage full or refused: reload anyway */
  }
  (reload ?? (() => location.reload()))();
  return true;
}

/**
 * Whether the API still accepts this browser's credential (the cookie, or the header the
 * sign-in proxy adds): false only on 401. Throws when the API cannot be reached (unknown).
 */
export async function credentialAccepted(fetchFn: typeof fetch = fetch): Promise<boolean> {
  const res = await fetchFn("/api/positions", { cache: "no-store", credentials: "same-origin", signal: AbortSignal.timeout(3000) });
  void res.body?.cancel();
  return res.status !== 401;
}

function sessionStorageOrNull(): Storage | null {
  try {
    return typeof sessionStorage === "undefined" ? null : sessionStorage;
  } catch {
    return null; // refused (e.g. a sandboxed frame)
  }
}
