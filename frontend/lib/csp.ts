// The dashboard's Content-Security-Policy: scripts only with this response's nonce (Next puts
// it on its own scripts, and 'strict-dynamic' lets those load the page's chunks), so an injected
// <script> or inline handler never runs; connections only to this origin (its /api and /ws) and
// to the WebSocket URL the page is told to use (`make run`: ttpulse's own port).

/** A fresh nonce for one response: 128 random bits, base64. */
export function newNonce(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return btoa(String.fromCharCode(...bytes));
}

/** The origin of a ws:// or wss:// URL, or null for anything else (never a wildcard). */
export function wsOrigin(url: string | null | undefined): string | null {
  if (!url) return null;
  try {
    const parsed = new URL(url);
    return parsed.protocol === "ws:" || parsed.protocol === "wss:" ? `${parsed.protocol}//${parsed.host}` : null;
  } catch {
    return null;
  }
}

export interface CspOptions {
  nonce: string;
  /** TTPULSE_PUBLIC_WS_URL: a WebSocket on another origin the page opens. */
  publicWsUrl?: string | null;
  /** `next dev` needs eval (React's debugging); production never does. */
  dev?: boolean;
}

export function contentSecurityPolicy({ nonce, publicWsUrl, dev = false }: CspOptions): string {
  const ws = wsOrigin(publicWsUrl);
  return [
    "default-src 'self'",
    `script-src 'self' 'nonce-${nonce}' 'strict-dynamic'${dev ? " 'unsafe-eval'" : ""}`,
    // lightweight-charts inserts a <style> element (its attribution logo's); styles cannot run code.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self'",
    // 'self' covers ws:// and wss:// of this origin too (CSP Level 3).
    `connect-src 'self'${ws ? ` ${ws}` : ""}`,
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
}
