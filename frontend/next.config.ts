import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  poweredByHeader: false,
  reactStrictMode: true,
  // /api and /ws (and, for `make run`, /admin and /metrics) are proxied to ttpulse by proxy.ts
  // (at request time, not build time), which also sets the pages' Content-Security-Policy with
  // a per-request script nonce. Browser hardening on every answer: never framed (clickjacking),
  // no MIME sniffing, no referrer leaving the desk.
  async headers() {
    return [
      {
        source: "/:path*",
        headers: [
          { key: "X-Frame-Options", value: "DENY" },
          { key: "X-Content-Type-Options", value: "nosniff" },
          { key: "Referrer-Policy", value: "no-referrer" },
        ],
      },
    ];
  },
};

export default nextConfig;
