//! Writes a run's figures: results.json (raw), latency.svg (percentiles against rate) and
//! summary.md (the tables BENCHMARKS.md quotes, with the ratios to the raw limits).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::measure::Latency;
use crate::{RateRow, Report};

pub fn write(report: &Report, out: &Path) -> anyhow::Result<()> {
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(report)?)?;
    plot(report, &out.join("latency.svg"))?;
    let summary = summary(report);
    std::fs::write(out.join("summary.md"), &summary)?;
    println!("{summary}");
    Ok(())
}

fn plot(report: &Report, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let series: [(&str, &[RateRow], RGBColor); 4] = [
        ("ttpulse embedded", &report.embedded, RGBColor(31, 119, 180)),
        ("ttpulse distributed", &report.distributed, RGBColor(214, 39, 40)),
        ("raw broker trip", &report.kafka_raw, RGBColor(44, 160, 44)),
        ("raw Redis Pub/Sub trip", &report.redis_raw, RGBColor(148, 103, 189)),
    ];
    let max_rate = series.iter().flat_map(|(_, rows, _)| rows.iter().map(|r| r.rate)).max().unwrap_or(10_000) as f64;
    let max_ms = series.iter().flat_map(|(_, rows, _)| rows.iter().map(|r| r.latency.p99_ms)).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("end-to-end latency against rate (solid p99, dashed p50)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((500f64..max_rate * 2.0).log_scale(), (0.05f64..max_ms * 3.0).log_scale())?;
    chart.configure_mesh().x_desc("events per second").y_desc("milliseconds").draw()?;
    for (name, rows, color) in series {
        if rows.is_empty() {
            continue;
        }
        let p99: Vec<(f64, f64)> = rows.iter().map(|r| (r.rate as f64, r.latency.p99_ms.max(0.05))).collect();
        let p50: Vec<(f64, f64)> = rows.iter().map(|r| (r.rate as f64, r.latency.p50_ms.max(0.05))).collect();
        chart
            .draw_series(LineSeries::new(p99.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(p99.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
        chart.draw_series(DashedLineSeries::new(p50, 4, 4, color.stroke_width(1)))?;
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
    root.present()?;
    Ok(())
}

fn ms(v: f64) -> String {
    if v < 1.0 { format!("{v:.2}") } else { format!("{v:.1}") }
}

fn server(r: &RateRow) -> String {
    match (r.server_p50_ms, r.server_p99_ms) {
        (Some(a), Some(b)) => format!("<= {} / <= {}", ms(a), ms(b)),
        _ => "-".to_owned(),
    }
}

/// One row of the latency table: the columns every path shares, then its own last column.
fn latency_row(s: &mut String, rate: u32, path: &str, l: &Latency, server: &str, last: &str) {
    let _ = writeln!(
        s,
        "| {rate} | {path} | {} | {} | {} | {} | {server} | {:.0} | {last} |",
        ms(l.p50_ms),
        ms(l.p99_ms),
        ms(l.p999_ms),
        ms(l.max_ms),
        l.per_second
    );
}

fn row(rate: u32, rows: &[RateRow]) -> Option<&RateRow> {
    rows.iter().find(|r| r.rate == rate)
}

pub fn summary(report: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Setup: {}\n", report.setup);
    let _ = writeln!(s, "### End-to-end latency, ingest -> WebSocket client (ms, after warm-up)\n");
    let _ = writeln!(
        s,
        "| rate /s | path | p50 | p99 | p99.9 | max | server p50 / p99 | samples/s | ratio p99 / raw limit |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for r in &report.embedded {
        let target = if r.rate == 10_000 {
            format!(
                "target p99 < 1 ms: client {}, server {}",
                if r.latency.p99_ms < 1.0 { "met" } else { "missed" },
                if r.server_p99_ms.is_some_and(|p| p <= 1.0) { "met" } else { "missed" }
            )
        } else {
            "-".to_owned()
        };
        latency_row(&mut s, r.rate, "ttpulse embedded", &r.latency, &server(r), &target);
    }
    for r in &report.distributed {
        let (k, red) = (row(r.rate, &report.kafka_raw), row(r.rate, &report.redis_raw));
        let limit = k.zip(red).map(|(k, red)| 2.0 * k.latency.p99_ms + red.latency.p99_ms);
        let ratio = limit.map_or("-".to_owned(), |l| {
            format!("{:.2}x of 2 broker + 1 Redis trips ({} ms); target <= 1.5x", r.latency.p99_ms / l, ms(l))
        });
        latency_row(&mut s, r.rate, "ttpulse distributed", &r.latency, &server(r), &ratio);
    }
    for (name, rows) in
        [("raw broker produce->consume", &report.kafka_raw), ("raw Redis PUBLISH->subscriber", &report.redis_raw)]
    {
        for r in rows.iter() {
            latency_row(&mut s, r.rate, name, &r.latency, "-", "limit");
        }
    }
    if let Some(p) = &report.polling_1s {
        let rate = report.embedded.first().map_or(0, |r| r.rate);
        latency_row(&mut s, rate, "legacy 1 s snapshot polling", p, "-", "baseline");
    }

    let _ = writeln!(s, "\n### Warm-up (first seconds, excluded above)\n");
    let _ = writeln!(s, "| rate /s | path | p50 | p99 | max |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for (name, rows) in
        [("embedded", &report.embedded), ("distributed", &report.distributed), ("raw broker", &report.kafka_raw)]
    {
        for r in rows.iter() {
            let _ = writeln!(
                s,
                "| {} | {name} | {} | {} | {} |",
                r.rate,
                ms(r.warmup.p50_ms),
                ms(r.warmup.p99_ms),
                ms(r.warmup.max_ms)
            );
        }
    }

    let _ =
        writeln!(s, "\n### Throughput (sustained: achieved >= 95% of target, p99 < 100 ms, lag < 0.5 s of events)\n");
    let _ = writeln!(s, "| mode | target /s | achieved /s | p99 ms | lag at end | sustained |");
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for (name, steps) in [("embedded", &report.throughput_embedded), ("distributed", &report.throughput_distributed)] {
        for t in steps.iter() {
            let _ = writeln!(
                s,
                "| {name} | {} | {:.0} | {} | {:.0} | {} |",
                t.target,
                t.achieved,
                ms(t.p99_ms),
                t.lag,
                if t.sustained { "yes" } else { "no" }
            );
        }
        let best = steps.iter().filter(|t| t.sustained).map(|t| t.achieved).fold(0.0, f64::max);
        let ratio = if report.broker_max_rate > 0.0 { best / report.broker_max_rate } else { 0.0 };
        let _ = writeln!(
            s,
            "| {name} best sustained | | {best:.0} | | | {ratio:.2}x of the broker's raw {:.0} msg/s (target >= 0.5x) |",
            report.broker_max_rate
        );
    }

    let _ = writeln!(
        s,
        "\n### Fan-out (embedded ttpulse at 1,000 events/s; each session subscribed to 3 of 12 instruments)\n"
    );
    // Runs recorded before wire version 2 have no batched rows: they render as they were published.
    let batched = report.fanout.iter().any(|f| f.ours_batched.sessions_wanted > 0);
    let (frames_head, frames_rule) = if batched { (" frames/s |", "---|") } else { ("", "") };
    let _ = writeln!(
        s,
        "| sessions | server | connected | delivery p50 ms | p99 ms | max ms | messages/s delivered |{frames_head} memory per session |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|{frames_rule}---|");
    for f in &report.fanout {
        let mut rows = vec![("ttpulse", &f.ours, f.ours_bytes_per_session)];
        if batched {
            rows = vec![
                ("ttpulse v1", &f.ours, f.ours_bytes_per_session),
                ("ttpulse v2 (batched)", &f.ours_batched, f.ours_batched_bytes_per_session),
            ];
        }
        rows.push(("plain broadcast", &f.broadcast, f.broadcast_bytes_per_session));
        for (name, r, bytes) in rows {
            let frames = if batched { format!(" {:.0} |", r.frames_per_second) } else { String::new() };
            let _ = writeln!(
                s,
                "| {} | {name} | {} | {} | {} | {} | {:.0} |{frames} {:.1} KiB |",
                f.sessions,
                r.sessions_connected,
                ms(r.delivery.p50_ms),
                ms(r.delivery.p99_ms),
                ms(r.delivery.max_ms),
                r.messages_per_second,
                bytes / 1024.0
            );
        }
    }

    let _ = writeln!(s, "\n### Cost per process (CPU % of one core, resident memory)\n");
    let _ = writeln!(s, "| mode | rate /s | process | CPU % | RSS MiB |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for (name, rows) in [("embedded", &report.embedded), ("distributed", &report.distributed)] {
        for r in rows.iter() {
            for c in &r.cost {
                let _ =
                    writeln!(s, "| {name} | {} | {} | {:.0} | {:.0} |", r.rate, c.process, c.cpu_percent, c.rss_mib);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recorded run renders to exactly the summary BENCHMARKS.md quotes, so a change to the
    /// tables' code cannot silently change (or drop) a published figure.
    #[test]
    fn the_recorded_run_renders_its_published_summary() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/after-trust");
        let report: Report =
            serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).expect("results.json"))
                .expect("a recorded report");
        let published = std::fs::read_to_string(dir.join("summary.md")).expect("summary.md");
        assert_eq!(summary(&report), published);
    }
}
