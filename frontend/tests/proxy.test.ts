// The Next server's proxy: what it forwards to ttpulse, what it refuses, and the pages' CSP.
import { afterEach, describe, expect, it, vi } from "vitest";
import { NextRequest } from "next/server";
import { config, proxy } from "@/proxy";
import { contentSecurityPolicy, newNonce, wsOrigin } from "@/lib/csp";

afterEach(() => {
  vi.unstubAllEnvs();
});

const request = (path: string, method = "GET") => new NextRequest(`http://dash.example${path}`, { method });
/** Where Next is told to rewrite the request to, or null (not proxied). */
const rewrittenTo = (res: Response) => res.headers.get("x-middleware-rewrite");
/** Answered here with a 404 and not passed on to ttpulse. */
function expectRefused(res: Response, what?: string) {
  expect(res.status, what).toBe(404);
  expect(rewrittenTo(res), what).toBeNull();
}

describe("proxy: admin and metrics", () => {
  it("are 404 by default: a reachable Next server never makes them public", async () => {
    for (const path of ["/admin/actors", "/admin/health", "/metrics", "/admin"]) {
      expectRefused(proxy(request(path)), path);
    }
    expect(proxy(request("/admin/actors/processor/restart", "POST")).status).toBe(404);
  });

  it("are proxied (reads only) to the admin listener with TTPULSE_DASHBOARD_ADMIN_PROXY=1", () => {
    vi.stubEnv("TTPULSE_DASHBOARD_ADMIN_PROXY", "1");
    vi.stubEnv("TTPULSE_ADMIN_URL", "http://127.0.0.1:9999/");
    expect(rewrittenTo(proxy(request("/admin/actors")))).toBe("http://127.0.0.1:9999/admin/actors");
    expect(rewrittenTo(proxy(request("/metrics")))).toBe("http://127.0.0.1:9999/metrics");
    expectRefused(proxy(request("/admin/actors/processor/restart", "POST")));
  });

  it("any other value of the switch leaves them closed", () => {
    vi.stubEnv("TTPULSE_DASHBOARD_ADMIN_PROXY", "true");
    expect(proxy(request("/metrics")).status).toBe(404);
  });
});

describe("proxy: the read API and /ws", () => {
  it("reads go to TTPULSE_API_URL; writes (ingest) never", () => {
    vi.stubEnv("TTPULSE_API_URL", "http://127.0.0.1:8888");
    expect(rewrittenTo(proxy(request("/api/snapshot?positions=A")))).toBe("http://127.0.0.1:8888/api/snapshot?positions=A");
    expect(rewrittenTo(proxy(request("/ws")))).toBe("http://127.0.0.1:8888/ws");
    expectRefused(proxy(request("/api/ingest", "POST")));
  });
});

describe("proxy: pages", () => {
  it("get a script policy with a fresh nonce, on the response and on the request Next renders", () => {
    const first = proxy(request("/"));
    const second = proxy(request("/ops"));
    const csp = first.headers.get("content-security-policy") ?? "";
    const nonce = /'nonce-([A-Za-z0-9+/=]+)'/.exec(csp)?.[1];
    expect(nonce).toBeTruthy();
    expect(csp).toContain(`script-src 'self' 'nonce-${nonce}' 'strict-dynamic'`);
    expect(second.headers.get("content-security-policy")).not.toContain(nonce);
    expect(rewrittenTo(first)).toBeNull();
    // Next passes the request headers it renders with as x-middleware-request-*.
    expect(first.headers.get("x-middleware-request-x-nonce")).toBe(nonce);
    expect(first.headers.get("x-middleware-request-content-security-policy")).toBe(csp);
  });

  it("the matcher leaves out only the hashed build assets", () => {
    const matcher = new RegExp(`^${config.matcher[0]}$`);
    for (const path of ["/", "/ops", "/api/snapshot", "/ws", "/admin/actors", "/metrics", "/icon.svg"]) expect(matcher.test(path), path).toBe(true);
    expect(matcher.test("/_next/static/chunks/app.js")).toBe(false);
  });
});

describe("contentSecurityPolicy", () => {
  it("allows scripts by nonce only, and connections to this origin", () => {
    const csp = contentSecurityPolicy({ nonce: "abc=" });
    const directives = Object.fromEntries(csp.split("; ").map((d) => [d.split(" ")[0], d.slice(d.indexOf(" ") + 1)]));
    expect(directives).toEqual({
      "default-src": "'self'",
      "script-src": "'self' 'nonce-abc=' 'strict-dynamic'",
      "style-src": "'self' 'unsafe-inline'",
      "img-src": "'self' data:",
      "font-src": "'self'",
      "connect-src": "'self'",
      "object-src": "'none'",
      "base-uri": "'self'",
      "form-action": "'self'",
      "frame-ancestors": "'none'",
    });
    expect(csp).not.toContain("unsafe-eval");
    expect(contentSecurityPolicy({ nonce: "n", dev: true })).toContain("'strict-dynamic' 'unsafe-eval'");
  });

  it("adds the origin of the page's WebSocket on another port (make run), nothing else", () => {
    expect(contentSecurityPolicy({ nonce: "n", publicWsUrl: "ws://127.0.0.1:8080/ws" })).toContain("connect-src 'self' ws://127.0.0.1:8080;");
    expect(wsOrigin("wss://desk.example.com/ws?x=1")).toBe("wss://desk.example.com");
    // Not a WebSocket URL, or a value that would widen the policy: ignored.
    for (const bad of ["http://evil.example/", "*", "ws://a.example; script-src *", "", null]) {
      expect(contentSecurityPolicy({ nonce: "n", publicWsUrl: bad })).toContain("connect-src 'self'; ");
    }
  });

  it("nonces are 128 random bits, base64, never repeated", () => {
    const nonces = new Set(Array.from({ length: 1000 }, newNonce));
    expect(nonces.size).toBe(1000);
    for (const n of nonces) expect(n).toMatch(/^[A-Za-z0-9+/]{22}==$/);
  });
});
