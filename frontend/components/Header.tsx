import Link from "next/link";
import type { ConnState, HopsMs } from "@/lib/liveFeed";
import { fmtClock, fmtMs } from "@/lib/format";

const LABEL: Record<ConnState, string> = {
  connecting: "connecting",
  live: "live",
  stale: "stale",
  disconnected: "disconnected",
  refused: "refused",
  "signed-out": "signed out",
};

export function ConnBadge({ conn }: { conn: ConnState }) {
  return (
    <span className={`badge badge-${conn}`} data-testid="conn-state" data-state={conn} role="status" aria-live="polite">
      <span className="dot" aria-hidden="true" />
      {LABEL[conn]}
    </span>
  );
}

export interface HeaderProps {
  page: "dashboard" | "ops";
  conn?: ConnState;
  delayMs?: number | null;
  /** The newest update's delay by hop, shown on hover. */
  hopsMs?: HopsMs | null;
  nowMs?: number;
  extra?: React.ReactNode;
}

export default function Header({ page, conn, delayMs, hopsMs, nowMs, extra }: HeaderProps) {
  return (
    <header className="topbar">
      <div className="brand">
        <span className="logo" aria-hidden="true">▲</span>
        ttpulse
      </div>
      <nav className="nav" aria-label="Pages">
        <Link href="/" className={page === "dashboard" ? "active" : ""} aria-current={page === "dashboard" ? "page" : undefined}>
          Dashboard
        </Link>
        <Link href="/ops" className={page === "ops" ? "active" : ""} aria-current={page === "ops" ? "page" : undefined}>
          Operations
        </Link>
      </nav>
      <div className="topbar-right">
        {extra}
        {conn !== undefined && (
          <span
            className="metric"
            data-testid="e2e-metric"
            title={
              hopsMs
                ? `End-to-end delay of the newest update: ingest → processed ${fmtMs(hopsMs.processed)}, → cached ${fmtMs(
                    hopsMs.cached,
                  )}, → this page ${fmtMs(hopsMs.delivered)}`
                : "End-to-end delay of the newest update: now − ingest time"
            }
          >
            <span className="metric-label">E2E</span>
            <span className="num" data-testid="e2e-delay">
              {fmtMs(delayMs)}
            </span>
          </span>
        )}
        {nowMs !== undefined && (
          <span className="metric" title="UTC">
            <span className="metric-label">UTC</span>
            <span className="num">{fmtClock(nowMs)}</span>
          </span>
        )}
        {conn !== undefined && <ConnBadge conn={conn} />}
      </div>
    </header>
  );
}
