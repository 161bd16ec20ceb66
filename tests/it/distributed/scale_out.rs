//! Scale-out shown, not claimed: one, two and three processors sharing the partitions of
//! `tt_raw_data` agree with a recomputation, and two api nodes behind the shipped nginx config
//! (deploy/nginx.conf, two servers in its `ttpulse_api` upstream) push the same updates with the
//! same seqs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use ttpulse_actors::domain::{InstrumentCatalog, Update};
use ttpulse_actors::ingest::simulator::Simulator;
use ttpulse_harness::{Proc, free_port, wait_port};

use super::{TwoApis, WAIT, consumed, healthy, ingest, recompute};
use crate::common::stack::{Role, Services};
use crate::common::{WsClient, eventually, fill, get_text, holds_all, quote, trade};

fn assignments(role: &Role) -> usize {
    role.log_text().matches("Kafka partitions assigned").count()
}

/// Ingests the simulator's events in three phases, with one, then two, then three processors in
/// the group: in each phase every processor takes a share, and after each the database holds
/// exactly what a recomputation of every event so far holds.
#[actix_rt::test]
async fn one_two_and_three_processors_share_the_stream_and_agree_with_a_recomputation() {
    let services = Services::start(false);
    let cache = services.role("cache", &[]);
    let ingester = services.role("ingester", &[]);
    let mut processors = vec![services.role("processor", &[])];
    for role in [&cache, &ingester, &processors[0]] {
        assert!(healthy(role).await, "{}", role.log_text());
    }
    let catalog = Arc::new(InstrumentCatalog::default_futures());
    const PER_PHASE: usize = 6_000;
    let mut events = Simulator::new(&catalog, 7).generate(3 * PER_PHASE, ttpulse_actors::health::now_micros());
    for event in &mut events {
        event.id.source = "scale".into();
    }
    for phase in 1..=3 {
        if phase > 1 {
            // A processor joins: wait until the group has given every member its new share.
            let before: Vec<usize> = processors.iter().map(assignments).collect();
            processors.push(services.role("processor", &[]));
            let all_reassigned = eventually(WAIT, async || {
                processors.iter().zip(before.iter().chain([&0])).all(|(p, n)| assignments(p) > *n)
            })
            .await;
            assert!(all_reassigned, "the group did not rebalance to {phase} members");
        }
        let consumed_before: Vec<u64> = {
            let mut counts = Vec::new();
            for p in &processors {
                counts.push(consumed(p).await);
            }
            counts
        };
        let upto = phase * PER_PHASE;
        let chunk = &events[(phase - 1) * PER_PHASE..upto];
        let wire: Vec<Value> = chunk.iter().map(|e| serde_json::to_value(e.to_raw()).expect("json")).collect();
        for part in wire.chunks(2_000) {
            ingest(&ingester, part).await;
        }
        let (expected, _) = recompute(&catalog, &events[..upto]);
        let trades = events[..upto].iter().filter(|e| e.body.kind() == "trade").count();
        let fills = events[..upto].iter().filter(|e| e.body.kind() == "fill").count();
        let seqs: u64 = expected.values().map(|u| if let Update::Instrument(s) = u { s.seq } else { 0 }).sum();
        let stored = || {
            services.sql(
                "SELECT (SELECT count(*) FROM trades) || ' ' || (SELECT count(*) FROM fills) || ' ' || \
                 (SELECT coalesce(sum(seq), 0) FROM instrument_states)",
            )
        };
        let want = format!("{trades} {fills} {seqs}");
        let done = eventually(Duration::from_secs(120), async || stored() == want).await;
        assert!(done, "phase {phase}: stored {} of {want}", stored());
        // Every processor in the group took part of this phase's stream.
        for (i, p) in processors.iter().enumerate() {
            let now = consumed(p).await;
            assert!(now > consumed_before[i], "phase {phase}: processor {i} consumed nothing ({now})");
        }
        // Every instrument and position equals the recomputation, seqs included.
        for (key, update) in &expected {
            let (row, want) = match update {
                Update::Instrument(s) => (
                    services.sql(&format!(
                        "SELECT seq || ' ' || volume || ' ' || trades FROM instrument_states WHERE symbol = '{}'",
                        s.symbol
                    )),
                    format!("{} {} {}", s.seq, s.volume, s.trades),
                ),
                Update::Position(p) => (
                    services.sql(&format!(
                        "SELECT seq || ' ' || net_qty || ' ' || realized_pnl FROM positions \
                         WHERE account = '{}' AND symbol = '{}'",
                        p.account, p.symbol
                    )),
                    format!("{} {} {}", p.seq, p.net_qty, p.realized_pnl),
                ),
                _ => continue,
            };
            assert_eq!(row, want, "phase {phase}: {key}");
        }
        eprintln!("phase {phase}: {} processors, {upto} events, database equals the recomputation", processors.len());
    }
}

/// deploy/nginx.conf made runnable here: the shipped file with its ports and log path
/// substituted and two api nodes in the `ttpulse_api` upstream.
fn nginx_config(prefix: &Path, listen: u16, api: [&str; 2], admin: &str) -> String {
    let site = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf")).expect("nginx.conf");
    let host = |url: &str| url.trim_start_matches("http://").to_owned();
    let substitutions = [
        ("    listen 80;", format!("    listen 127.0.0.1:{listen};")),
        ("    server 127.0.0.1:3000;", format!("    server 127.0.0.1:{};", free_port())),
        ("    server 127.0.0.1:8080;", format!("    server {};\n    server {};", host(api[0]), host(api[1]))),
        ("    server 127.0.0.1:9464;", format!("    server {};", host(admin))),
        (
            "    access_log /var/log/nginx/ttpulse.access.log ttpulse_edge;",
            format!("    access_log {}/access.log ttpulse_edge;", prefix.display()),
        ),
    ];
    let mut body = site.clone();
    for (from, to) in substitutions {
        assert_eq!(site.matches(from).count(), 1, "deploy/nginx.conf: `{from}` must stand exactly once");
        body = body.replace(from, &to);
    }
    let p = prefix.display();
    format!(
        "daemon off;\nmaster_process off;\npid {p}/nginx.pid;\nerror_log {p}/error.log info;\n\
         events {{ worker_connections 256; }}\nhttp {{\n    client_body_temp_path {p}/client_body;\n    \
         proxy_temp_path {p}/proxy;\n    fastcgi_temp_path {p}/fastcgi;\n    uwsgi_temp_path {p}/uwsgi;\n    \
         scgi_temp_path {p}/scgi;\n{body}\n}}\n"
    )
}

fn start_nginx(prefix: &Path, config: &str, port: u16) -> Proc {
    let conf = prefix.join("nginx.conf");
    std::fs::write(&conf, config).expect("write nginx.conf");
    let bin = std::env::var("NGINX_BIN").unwrap_or_else(|_| "/usr/sbin/nginx".into());
    let proc = Proc::spawn(
        Command::new(&bin).arg("-p").arg(prefix).arg("-c").arg(&conf).arg("-e").arg(prefix.join("error.log")),
        &format!("{bin} (scripts/ensure-test-deps.sh installs nginx)"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    wait_port(port, "nginx", Duration::from_secs(15)).unwrap_or_else(|e| panic!("{e}"));
    proc
}

/// Two api nodes, each mirroring Redis, behind the shipped nginx config: two WebSocket clients
/// through nginx land one on each node (round robin) and receive the same updates, in the same
/// order, with the same seqs.
#[actix_rt::test]
async fn two_api_nodes_behind_the_shipped_nginx_push_the_same_updates_with_the_same_seqs() {
    let services = Services::start(false);
    // Bound, not `..`: a Role left unbound would be dropped (its process killed) at once.
    let TwoApis { api, ingester, processor: _processor, cache: _cache } = TwoApis::start(&services).await;
    let prefix = services.dir.path().join("nginx");
    std::fs::create_dir_all(&prefix).expect("nginx dir");
    let port = free_port();
    let _nginx = start_nginx(&prefix, &nginx_config(&prefix, port, [&api[0].url, &api[1].url], &api[0].admin), port);

    let sessions = async |node: &Role| -> i64 {
        let (_, metrics) = get_text(&format!("{}/metrics", node.admin)).await;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("ttpulse_ws_connections "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1)
    };
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut ws = WsClient::connect(&format!("ws://127.0.0.1:{port}/ws")).await;
        ws.subscribe(&["ESZ6", "NQZ6"], &["ACC1"]).await;
        clients.push(ws);
    }
    let spread = eventually(WAIT, async || sessions(&api[0]).await == 1 && sessions(&api[1]).await == 1).await;
    assert!(
        spread,
        "nginx did not put one session on each node: {} and {}",
        sessions(&api[0]).await,
        sessions(&api[1]).await
    );

    let mut events = Vec::new();
    for i in 0..20 {
        let tick = format!("{}.{:02}", 6850 + i / 4, (i % 4) * 25);
        let id = |n: i32| format!("nginx:{}", 3 * i + n);
        events.push(quote(&id(1), "ESZ6", &tick, "6900.00"));
        events.push(trade(&id(2), "NQZ6", "25000.00", 1 + i64::from(i % 3), "buy"));
        events.push(fill(&id(3), "ACC1", &format!("F-{i}"), "ESZ6", "buy", "6850.25", 1));
    }
    ingest(&ingester, &events).await;
    let wanted = [("inst:ESZ6", 20), ("inst:NQZ6", 20), ("fills:ACC1:ESZ6", 20), ("pos:ACC1:ESZ6", 20)];
    let mut seen = Vec::new();
    for ws in &mut clients {
        let mut updates = ws.updates_until(WAIT, |got| holds_all(got, &wanted)).await;
        assert!(holds_all(&updates, &wanted), "not every update arrived: {} updates", updates.len());
        // The rest on its way: each node reaches the counts above at its own moment, with more
        // or fewer of the later updates (the position's re-marks) already in (nothing is
        // ingested after this, so two quiet seconds hold everything).
        updates.extend(ws.updates_until(Duration::from_secs(2), |_| false).await);
        // P&L samples are taken by the clock (one a second), not by the events: left out.
        let stream: Vec<(String, u64)> = updates
            .iter()
            .filter(|u| !u["key"].as_str().unwrap_or("pnl:").starts_with("pnl:"))
            .map(|u| (u["key"].as_str().unwrap_or_default().to_owned(), u["seq"].as_u64().unwrap_or_default()))
            .collect();
        super::assert_gapless(&updates);
        seen.push(stream);
    }
    // Per key, both nodes pushed the same seqs. (Across keys the order may differ: a session
    // sends its account lane ahead of its market lane within a wake, and the nodes wake apart.)
    let by_key = |stream: &[(String, u64)]| {
        let mut keys: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (key, seq) in stream {
            keys.entry(key.clone()).or_default().push(*seq);
        }
        keys
    };
    assert_eq!(by_key(&seen[0]), by_key(&seen[1]), "the two nodes pushed different updates");
}
