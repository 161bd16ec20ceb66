// Every request to the Next server passes here (its static assets excepted):
//
// - /api/* and /ws are proxied to the ttpulse HTTP API at TTPULSE_API_URL (reads only), so the
//   candle history and even the WebSocket (Next proxies the upgrade) work without nginx.
//   `make run` still points the browser's WebSocket straight at ttpulse (TTPULSE_PUBLIC_WS_URL)
//   to skip a hop. Behind nginx these paths never reach Next.
// - /admin/* and /metrics (reads only) are proxied to ttpulse's admin listener at
//   TTPULSE_ADMIN_URL only when TTPULSE_DASHBOARD_ADMIN_PROXY=1 (frontend/scripts/run.sh sets it
//   for `make run` on loopback, so that the ops page works there); otherwise they are 404 here,
//   so a Next server reachable by others never makes the admin endpoints public. Behind nginx
//   the ops page reads them through nginx, from the nginx host only.
// - Pages get a Content-Security-Policy with a fresh nonce (lib/csp.ts); Next reads the nonce
//   from the request's copy of the header and puts it on its scripts.
//
// This is a Proxy (Next 16's name for middleware) rather than `rewrites` in next.config.ts:
// next.config rewrites are compiled into the build's routes manifest, which would freeze the
// API address at build time; here it is read from the environment on every request.

import { NextResponse, type NextRequest } from "next/server";
import { contentSecurityPolicy, newNonce } from "./lib/csp";

const notFound = (method: string, pathname: string) =>
  NextResponse.json({ error: "not_found", message: `${method} ${pathname} is not served here` }, { status: 404 });

export function proxy(request: NextRequest) {
  const { pathname, search } = request.nextUrl;
  const admin = pathname.startsWith("/admin/") || pathname === "/admin" || pathname === "/metrics";
  const api = pathname.startsWith("/api/") || pathname === "/ws";
  if (!admin && !api) return page(request);
  if (admin && process.env.TTPULSE_DASHBOARD_ADMIN_PROXY !== "1") return notFound(request.method, pathname);
  // The dashboard only reads: no ingest, no admin write (actor restarts), whatever the path's
  // spelling (`/api/%69ngest` is decoded by ttpulse, not here), because only GET and HEAD pass.
  if (request.method !== "GET" && request.method !== "HEAD") return notFound(request.method, pathname);
  const upstream = (
    (admin ? process.env.TTPULSE_ADMIN_URL || "http://127.0.0.1:9464" : process.env.TTPULSE_API_URL) || "http://127.0.0.1:8080"
  ).replace(/\/+$/, "");
  // ttpulse believes the client address a proxy on its host passes on; this one must not pass
  // on what the client wrote. (The limits per address then count every client of this server as
  // one: behind nginx the WebSocket does not come through here.)
  const headers = new Headers(request.headers);
  headers.delete("x-real-ip");
  headers.delete("x-forwarded-for");
  return NextResponse.rewrite(new URL(`${pathname}${search}`, `${upstream}/`), { request: { headers } });
}

/** A page (or anything else Next serves itself): rendered with this response's CSP nonce. */
function page(request: NextRequest) {
  const nonce = newNonce();
  const csp = contentSecurityPolicy({
    nonce,
    publicWsUrl: process.env.TTPULSE_PUBLIC_WS_URL,
    dev: process.env.NODE_ENV === "development",
  });
  const headers = new Headers(request.headers);
  headers.set("x-nonce", nonce);
  headers.set("content-security-policy", csp);
  const response = NextResponse.next({ request: { headers } });
  response.headers.set("content-security-policy", csp);
  return response;
}

export const config = {
  // Everything but the hashed build assets (scripts under a nonce policy need no header).
  matcher: ["/((?!_next/static|_next/image).*)"],
};
