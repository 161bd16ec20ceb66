import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  poweredByHeader: false,
  reactStrictMode: true,
  // /api, /admin and /metrics are proxied to ttpulse by proxy.ts (at request time, not build time).
};

export default nextConfig;
