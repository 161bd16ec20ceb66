import type { Metadata, Viewport } from "next";
import { connection } from "next/server";
import "./globals.css";

export const metadata: Metadata = {
  title: "ttpulse · market dashboard",
  description: "Real-time market watch, candles, positions and pipeline health for ttpulse",
};

export const viewport: Viewport = {
  themeColor: "#0b0f14",
  colorScheme: "dark",
};

export default async function RootLayout({ children }: { children: React.ReactNode }) {
  // Every page is rendered per request: Next puts the request's CSP nonce (proxy.ts) on its
  // scripts only when it renders, and a page prerendered at build time would carry none.
  await connection();
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  );
}
