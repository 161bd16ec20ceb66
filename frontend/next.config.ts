import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  poweredByHeader: false,
  reactStrictMode: true,
  // /api, /admin and /metrics are proxied to ttpulse by proxy.ts (at request time, not build time).
  // Browser hardening on every page: never framed (clickjacking), no MIME sniffing, no referrer
  // leaving the desk. (A script Content-Security-Policy needs per-request nonces for Next's
  // inline scripts: not set yet.)
  async headers() {
    return [
      {
        source: "/:path*",
        headers: [
          { key: "Content-Security-Policy", value: "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'" },
          { key: "X-Frame-Options", value: "DENY" },
          { key: "X-Content-Type-Options", value: "nosniff" },
          { key: "Referrer-Policy", value: "no-referrer" },
        ],
      },
    ];
  },
};

export default nextConfig;
