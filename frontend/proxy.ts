// Runtime rewrites: /api/*, /admin/*, /metrics and /ws on the Next server are proxied to the
// ttpulse HTTP API at TTPULSE_API_URL, so the candle history, the ops page and even the
// WebSocket (Next proxies the upgrade) work without nginx. `make run` still points the browser's
// WebSocket straight at ttpulse (TTPULSE_PUBLIC_WS_URL) to skip a hop. Behind nginx these paths
// never reach Next.
//
// This is a Proxy (Next 16's name for middleware) rather than `rewrites` in next.config.ts:
// next.config rewrites are compiled into the build's routes manifest, which would freeze the
// API address at build time; here it is read from the environment on every request.

import { NextResponse, type NextRequest } from "next/server";

export function proxy(request: NextRequest) {
  const api = (process.env.TTPULSE_API_URL || "http://127.0.0.1:8080").replace(/\/+$/, "");
  const { pathname, search } = request.nextUrl;
  // The dashboard only reads: ingest and admin writes (actor restarts) never go through it.
  if (pathname === "/api/ingest" || ((pathname.startsWith("/admin/") || pathname === "/metrics") && request.method !== "GET")) {
    return NextResponse.json({ error: "not_found", message: `${request.method} ${pathname} is not served here` }, { status: 404 });
  }
  return NextResponse.rewrite(new URL(`${pathname}${search}`, `${api}/`));
}

export const config = {
  matcher: ["/api/:path*", "/admin/:path*", "/metrics", "/ws"],
};
