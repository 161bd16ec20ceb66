"use client";
// The operations page: the actor table from /admin/actors and the key numbers of /metrics,
// refreshed every 2 s. Rates and latency quantiles are computed over the window between two
// scrapes when it holds observations, else over the process's lifetime.

import { useEffect, useRef, useState } from "react";
import Header from "./Header";
import type { ActorRow } from "@/lib/types";
import { bucketDelta, byLabel, histogram, parseProm, quantile, sumOf, type Bucket, type Sample } from "@/lib/prom";
import { DASH, fmtInt, fmtMs, fmtTime } from "@/lib/format";
import { OpsHistory } from "@/lib/opsHistory";
import { Sparkline } from "./Sparkline";
import { EmptyRow } from "./EmptyRow";

const REFRESH_MS = 2000;

/** The hops of an update, in order, as ttpulse_hop_latency_seconds labels them. */
const HOPS = ["ingest_to_processed", "processed_to_cached", "cached_to_written"] as const;

interface Scrape {
  at: number;
  samples: Sample[];
  e2e: Bucket[];
  db: Bucket[];
  hops: Record<string, Bucket[]>;
}

interface Health {
  status: string;
  mode?: string;
  database?: string;
  roles?: string[];
  not_running?: string[];
}

interface Latency {
  p50: number | null;
  p99: number | null;
  count: number;
  window: boolean;
}

function latency(now: Bucket[], before: Bucket[] | null): Latency {
  const delta = bucketDelta(now, before);
  const windowCount = delta.length ? delta[delta.length - 1].count : 0;
  const use = before && windowCount > 0 ? delta : now;
  const count = use.length ? use[use.length - 1].count : 0;
  const ms = (s: number | null) => (s == null ? null : s * 1000);
  return { p50: ms(quantile(0.5, use)), p99: ms(quantile(0.99, use)), count, window: use === delta && before != null };
}

/** The largest value of a metric over its label sets, or null when it has none. */
function maxOf(samples: Sample[], name: string): number | null {
  const values = samples.filter((x) => x.name === name).map((x) => x.value);
  return values.length ? Math.max(...values) : null;
}

function rate(now: Scrape, before: Scrape | null, name: string): number | null {
  if (!before) return null;
  const a = sumOf(before.samples, name);
  const b = sumOf(now.samples, name);
  if (a == null || b == null) return null;
  const secs = (now.at - before.at) / 1000;
  return secs > 0 ? Math.max(0, b - a) / secs : null;
}

/** The last minutes of a figure: a line and its range (`fmt` prints a value). */
function Trend({ history, name, fmt }: { history: OpsHistory; name: string; fmt: (v: number) => string }) {
  const values = history.values(name);
  const range = history.range(name);
  return (
    <div className="stat-trend" data-trend={name} data-points={values.length}>
      <Sparkline values={values} width={220} height={28} />
      <span className="muted">
        {range ? `last ${span(history.spanSeconds)}: ${fmt(range.min)} – ${fmt(range.max)}` : history.length >= 2 ? "no data" : "collecting…"}
      </span>
    </div>
  );
}

function Card({
  label,
  value,
  sub,
  testid,
  trend,
}: {
  label: string;
  value: React.ReactNode;
  sub?: React.ReactNode;
  testid?: string;
  trend?: React.ReactNode;
}) {
  return (
    <div className="stat" data-testid={testid}>
      <div className="stat-label">{label}</div>
      <div className="stat-value num">{value}</div>
      {sub != null && <div className="stat-sub">{sub}</div>}
      {trend}
    </div>
  );
}

const perSecond = (v: number) => `${fmtInt(v)}/s`;
const span = (seconds: number) => (seconds < 60 ? `${seconds} s` : `${Math.round(seconds / 60)} min`);

export default function OpsView() {
  const [actors, setActors] = useState<ActorRow[] | null>(null);
  const [health, setHealth] = useState<Health | null>(null);
  const [scrape, setScrape] = useState<Scrape | null>(null);
  const [previous, setPrevious] = useState<Scrape | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [nowMs, setNowMs] = useState<number | null>(null);
  const lastScrape = useRef<Scrape | null>(null);
  // Kept across renders; a new sample after every scrape.
  const [history] = useState(() => new OpsHistory());

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | null = null;
    const get = async (path: string) => {
      const res = await fetch(path, { cache: "no-store", signal: AbortSignal.timeout(1800) });
      if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
      return res;
    };
    const poll = async () => {
      const results = await Promise.allSettled([
        get("/admin/actors").then((r) => r.json() as Promise<ActorRow[]>),
        get("/metrics").then((r) => r.text()),
        get("/admin/health").then((r) => r.json() as Promise<Health>),
      ]);
      if (stopped) return;
      const [a, m, h] = results;
      const errors = results.filter((r) => r.status === "rejected").map((r) => String((r as PromiseRejectedResult).reason?.message ?? r));
      setError(errors.length ? errors.join("; ") : null);
      if (a.status === "fulfilled") setActors(a.value);
      if (h.status === "fulfilled") setHealth(h.value);
      if (m.status === "fulfilled") {
        const samples = parseProm(m.value);
        const next: Scrape = {
          at: Date.now(),
          samples,
          e2e: histogram(samples, "ttpulse_end_to_end_latency_seconds"),
          db: histogram(samples, "ttpulse_db_write_seconds"),
          hops: Object.fromEntries(HOPS.map((hop) => [hop, histogram(samples, "ttpulse_hop_latency_seconds", { hop })])),
        };
        const before = lastScrape.current;
        history.push(next.at, {
          events: rate(next, before, "ttpulse_events_processed_total"),
          e2e_p99: latency(next.e2e, before?.e2e ?? null).p99,
          db_p99: latency(next.db, before?.db ?? null).p99,
          sessions: sumOf(samples, "ttpulse_ws_connections"),
          // A counter with no series yet has counted nothing.
          conflated: before ? (rate(next, before, "ttpulse_updates_conflated_total") ?? 0) : null,
          refusals: before ? (rate(next, before, "ttpulse_refusals_total") ?? 0) : null,
          lag: maxOf(samples, "ttpulse_kafka_consumer_lag"),
          ...Object.fromEntries(HOPS.map((hop) => [hop, latency(next.hops[hop], before?.hops[hop] ?? null).p99])),
        });
        setPrevious(before);
        lastScrape.current = next;
        setScrape(next);
      }
      setNowMs(Date.now());
      timer = setTimeout(poll, REFRESH_MS);
    };
    void poll();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
  }, [history]);

  const s = scrape?.samples ?? [];
  const e2e = scrape ? latency(scrape.e2e, previous?.e2e ?? null) : null;
  const db = scrape ? latency(scrape.db, previous?.db ?? null) : null;
  const processed = byLabel(s, "ttpulse_events_processed_total", "type");
  const conflated = byLabel(s, "ttpulse_updates_conflated_total", "lane");
  const sent = byLabel(s, "ttpulse_updates_sent_total", "lane");
  const eventsRate = scrape ? rate(scrape, previous, "ttpulse_events_processed_total") : null;
  const conflatedRate = scrape && previous ? (rate(scrape, previous, "ttpulse_updates_conflated_total") ?? 0) : null;
  const num = (v: number | null | undefined) => (v == null ? DASH : fmtInt(v));
  const windowNote = (l: Latency | null) => (l ? `${l.window ? "last 2 s" : "since start"} · n=${fmtInt(l.count)}` : "");

  return (
    <div className="app ops">
      <Header page="ops" nowMs={nowMs ?? undefined} />
      {error && (
        <div className="banner banner-disconnected" role="alert">
          Cannot read the back end: {error}
          {/HTTP 40[34]/.test(error) && (
            <span className="muted">
              {" "}
              The admin endpoints are served only on ttpulse&apos;s host: open this page there (behind nginx, or with
              `make run`), or through an SSH tunnel.
            </span>
          )}
        </div>
      )}
      <main className="ops-main">
        <section className="panel" aria-labelledby="h-health">
          <div className="panel-head">
            <h2 id="h-health">Pipeline</h2>
            <span className="panel-meta">
              {health ? (
                <>
                  <span className={`pill ${health.status === "ok" ? "pill-ok" : "pill-bad"}`} data-testid="health">
                    {health.status}
                  </span>{" "}
                  {health.mode} · {health.database} · roles {health.roles?.join(", ")}
                  {health.not_running?.length ? ` · not running: ${health.not_running.join(", ")}` : ""}
                </>
              ) : (
                "…"
              )}
              {" · refreshes every 2 s · trends: the last 5 min in this tab · history: "}
              <span title="Import deploy/grafana-dashboard.json into Grafana; alert rules in deploy/prometheus/alerts.yml">
                deploy/grafana-dashboard.json
              </span>
            </span>
          </div>
          <div className="stats">
            <Card
              label="WebSocket sessions"
              testid="stat-ws"
              value={num(sumOf(s, "ttpulse_ws_connections"))}
              sub={`${num(sumOf(s, "ttpulse_ws_connections_total"))} opened`}
              trend={<Trend history={history} name="sessions" fmt={fmtInt} />}
            />
            <Card
              label="Events processed"
              testid="stat-events"
              value={num(sumOf(s, "ttpulse_events_processed_total"))}
              sub={`${eventsRate == null ? DASH : fmtInt(eventsRate)}/s · ${Object.entries(processed)
                .map(([k, v]) => `${k} ${fmtInt(v)}`)
                .join(" · ")}`}
              trend={<Trend history={history} name="events" fmt={perSecond} />}
            />
            <Card
              label="End-to-end latency p50 / p99"
              testid="stat-e2e"
              value={e2e ? `${fmtMs(e2e.p50)} / ${fmtMs(e2e.p99)}` : DASH}
              sub={`ingest → WebSocket · ${windowNote(e2e)}`}
              trend={<Trend history={history} name="e2e_p99" fmt={(v) => `p99 ${fmtMs(v)}`} />}
            />
            <Card
              label="Where the time goes: p99 per hop"
              testid="stat-hops"
              value={
                scrape
                  ? HOPS.map((hop) => fmtMs(latency(scrape.hops[hop], previous?.hops[hop] ?? null).p99)).join(" + ")
                  : DASH
              }
              sub="ingest → processed + processed → cached + cached → written (each measured where it ends)"
              trend={<Trend history={history} name="cached_to_written" fmt={(v) => `written p99 ${fmtMs(v)}`} />}
            />
            <Card
              label="DB write p50 / p99"
              testid="stat-db"
              value={db ? `${fmtMs(db.p50)} / ${fmtMs(db.p99)}` : DASH}
              sub={`per transaction · ${windowNote(db)} · ${num(sumOf(s, "ttpulse_db_write_errors_total"))} errors`}
              trend={<Trend history={history} name="db_p99" fmt={(v) => `p99 ${fmtMs(v)}`} />}
            />
            <Card
              label="Updates conflated"
              testid="stat-conflated"
              value={num(sumOf(s, "ttpulse_updates_conflated_total") ?? 0)}
              sub={`${conflatedRate == null ? DASH : fmtInt(conflatedRate)}/s · ${
                Object.entries(conflated).map(([k, v]) => `${k} ${fmtInt(v)}`).join(" · ") || "none"
              }`}
              trend={<Trend history={history} name="conflated" fmt={perSecond} />}
            />
            <Card
              label="Refusals"
              testid="stat-refusals"
              value={num(sumOf(s, "ttpulse_refusals_total") ?? 0)}
              sub={Object.entries(byLabel(s, "ttpulse_refusals_total", "reason")).map(([k, v]) => `${k} ${fmtInt(v)}`).join(" · ") || "none"}
              trend={<Trend history={history} name="refusals" fmt={perSecond} />}
            />
            <Card
              label="Consumer lag (distributed)"
              testid="stat-lag"
              value={num(maxOf(s, "ttpulse_kafka_consumer_lag"))}
              sub="messages behind, worst partition"
              trend={<Trend history={history} name="lag" fmt={fmtInt} />}
            />
            <Card
              label="Updates published / sent"
              value={`${num(sumOf(s, "ttpulse_updates_published_total"))} / ${num(sumOf(s, "ttpulse_updates_sent_total"))}`}
              sub={Object.entries(sent).map(([k, v]) => `${k} ${fmtInt(v)}`).join(" · ") || DASH}
            />
            <Card label="DB rows written" value={num(sumOf(s, "ttpulse_db_rows_written_total"))} sub={`${num(sumOf(s, "ttpulse_dead_letters_total"))} dead letters`} />
            <Card
              label="Events ingested"
              value={num(sumOf(s, "ttpulse_events_ingested_total"))}
              sub={`${num(sumOf(s, "ttpulse_events_duplicate_total"))} duplicates · ${num(sumOf(s, "ttpulse_late_trades_total"))} late trades`}
            />
          </div>
        </section>
        <section className="panel" aria-labelledby="h-actors">
          <div className="panel-head">
            <h2 id="h-actors">Actors</h2>
            <span className="panel-meta">GET /admin/actors</span>
          </div>
          <div className="table-scroll">
            <table className="grid-table actors" data-testid="actors">
              <thead>
                <tr>
                  <th scope="col" className="sym">Name</th>
                  <th scope="col">Kind</th>
                  <th scope="col">State</th>
                  <th scope="col" className="num">Restarts</th>
                  <th scope="col" className="num">Messages</th>
                  <th scope="col" className="num">Queue</th>
                  <th scope="col" className="num">Last message (UTC)</th>
                  <th scope="col">Detail</th>
                </tr>
              </thead>
              <tbody>
                {actors == null && <EmptyRow columns={8}>Loading…</EmptyRow>}
                {actors?.map((a) => (
                  <tr key={a.name} data-actor={a.name}>
                    <th scope="row" className="sym">
                      {a.name}
                    </th>
                    <td className="muted">{a.kind}</td>
                    <td>
                      <span className={`pill ${a.state === "running" ? "pill-ok" : "pill-bad"}`}>{a.state}</span>
                    </td>
                    <td className={`num ${a.restarts > 0 ? "warn" : ""}`}>{fmtInt(a.restarts)}</td>
                    <td className="num">{fmtInt(a.messages_handled)}</td>
                    <td className={`num ${a.queue_depth > 100 ? "warn" : ""}`}>{fmtInt(a.queue_depth)}</td>
                    <td className="num muted">{fmtTime(a.last_message_at)}</td>
                    <td className="muted">{a.detail ?? ""}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </section>
      </main>
    </div>
  );
}
