// Runtime rewrites: /api/* and /ws on the Next server are proxied to the ttpulse HTTP API at
// TTPULSE_API_URL, /admin/* and /metrics (reads only) to its admin listener at TTPULSE_ADMIN_URL, so the candle history, the ops page and even the
// WebSocket (Next proxies the upgrade) work without nginx. `make run` still points the browser's
// WebSocket straight at ttpulse (TTPULSE_PUBLIC_WS_URL) to skip a hop. Behind nginx these paths
// never reach Next.
//
// This is a Proxy (Next 16's name for middleware) rather than `rewrites` in next.config.ts:
// next.config rewrites are compiled into the build's routes manifest, which would freeze the
// API address at build time; here it is read from the environment on every request.

import { NextResponse, type NextRequest } from "next/server";

export function proxy(request: NextRequest) {
  const { pathname, search } = request.nextUrl;
  // /admin/* and /metrics live on ttpulse's admin listener (TTPULSE_ADMIN_ADDR), the rest on its
  // public one.
  const admin = pathname.startsWith("/admin/") || pathname === "/metrics";
  const api = (
    (admin ? process.env.TTPULSE_ADMIN_URL || "http://127.0.0.1:9464" : process.env.TTPULSE_API_URL) || "http://127.0.0.1:8080"
  ).replace(/\/+$/, "");
  // The dashboard only reads: no ingest, no admin write (actor restarts), whatever the path's
  // spelling (`/api/%69ngest` is decoded by ttpulse, not here), because only GET and HEAD pass.
  if (request.method !== "GET" && request.method !== "HEAD") {
    return NextResponse.json({ error: "not_found", message: `${request.method} ${pathname} is not served here` }, { status: 404 });
  }
  // ttpulse believes the client address a proxy on its host passes on; this one must not pass
  // on what the client wrote. (The limits per address then count every client of this server as
  // one: behind nginx the WebSocket does not come through here.)
  const headers = new Headers(request.headers);
  headers.delete("x-real-ip");
  headers.delete("x-forwarded-for");
  return NextResponse.rewrite(new URL(`${pathname}${search}`, `${api}/`), { request: { headers } });
}

export const config = {
  matcher: ["/api/:path*", "/admin/:path*", "/metrics", "/ws"],
};
