//! Regression tests from a hostile review of two changes: traces across processes (OTLP export,
//! `traceparent` on ingest) and fair sessions (the per-session message and byte budget). Each
//! asserts what must hold; those that failed at the review are fixed: a pong flood is cut off
//! like any other, shutdown stays within the grace with a collector that never answers (and a
//! second signal exits at once), `check` refuses the endpoints `run` refuses.
//!
//! A second review, of wire version 2 (batched frames) and the flooder drop: a session speaks
//! the version its handshake answered, whatever header fields the offer came in; a session cut
//! off for flooding frees its address's place (held).

use std::io::Write as _;
use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{TestServer, quote, raw_ws_session, run_embedded};

/// A masked control frame (key 0) with a 125-byte payload, the largest a control frame may be.
fn control_frame(opcode: u8) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode, 0x80 | 125, 0, 0, 0, 0];
    frame.extend_from_slice(&[b'p'; 125]);
    frame
}

/// Unsolicited pongs are frames like any other: a client that floods them is cut off like one
/// that floods pings or text. (The budget counts text, binary, ping and continuation frames, but
/// not pongs: a pong flood is read at full speed, frame by frame, for as long as the client
/// likes, and keeps the session "heard from" too.)
#[actix_rt::test]
async fn attack_a_pong_flood_is_cut_off_like_any_other_flood() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let flood = std::thread::spawn(move || {
        let mut stream = raw_ws_session(addr).expect("upgraded");
        stream.set_write_timeout(Some(Duration::from_secs(5))).expect("write timeout");
        // 500 pongs per write: 65 KiB, one flood frame's worth.
        let burst: Vec<u8> = std::iter::repeat_n(control_frame(0xA), 500).flatten().collect();
        let started = Instant::now();
        let mut bytes = 0u64;
        while started.elapsed() < Duration::from_secs(5) && stream.write_all(&burst).is_ok() {
            bytes += burst.len() as u64;
        }
        (started.elapsed(), bytes)
    });
    assert!(TestServer::eventually(Duration::from_secs(15), async || flood.is_finished()).await);
    let (took, bytes) = flood.join().expect("flood");
    eprintln!("pong flood: {} MB written in {took:?} before the connection ended (or the client gave up)", bytes >> 20);
    // A 64 KiB-frame flood is dropped within 900 ms (security.rs); a pong flood should be too.
    assert!(
        took < Duration::from_secs(2),
        "the pong flood went on for {took:?} ({} MB read by the server)",
        bytes >> 20
    );
}

/// Pings count one byte each, and a client's `{"op":"ping"}` text like any message: the
/// dashboard's keep-alive (one every few seconds) never comes near the budget, and the server
/// answers each.
#[actix_rt::test]
async fn attack_pings_at_a_dashboards_pace_are_never_refused() {
    let server = TestServer::start().await;
    let mut ws = server.ws().await;
    ws.subscribe(&["ESZ6"], &[]).await;
    for _ in 0..30 {
        ws.send(json!({"op": "ping"})).await;
        let pong = ws.next_of_type("pong", Duration::from_secs(5)).await;
        assert!(pong.is_some(), "every ping is answered");
        actix_rt::time::sleep(Duration::from_millis(60)).await;
    }
}

/// A collector that accepts connections and never answers (nor closes them).
fn black_hole() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(64).flatten() {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    (url, holder)
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<(Duration, Option<i32>)> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some((started.elapsed(), status.code()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn sigterm(child: &Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
}

/// `ttpulse run` with the simulator tracing every event into a collector that never answers,
/// 1.5 s on: spans are made, and the exporter is stuck sending the first batch.
fn simulating_into_a_black_hole(
    extra: &[(&str, &str)],
) -> ((String, std::thread::JoinHandle<()>), tempfile::TempDir, crate::common::Running) {
    let (collector, holder) = black_hole();
    let dir = tempfile::tempdir().expect("dir");
    let mut env = vec![
        ("TTPULSE_OTLP_ENDPOINT", collector.as_str()),
        ("TTPULSE_TRACE_SAMPLE_RATIO", "1"),
        ("TTPULSE_SOURCE", "simulator"),
        ("TTPULSE_SIM_RATE", "200"),
    ];
    env.extend_from_slice(extra);
    let running = run_embedded(dir.path(), &env);
    std::thread::sleep(Duration::from_millis(1500));
    ((collector, holder), dir, running)
}

/// SIGTERM with a collector that never answers: the process still exits within
/// TTPULSE_SHUTDOWN_GRACE_SECS (docs/operations.md "Shutdown"), not the grace plus the
/// exporter's 5 s flush.
#[test]
fn attack_shutdown_with_a_black_hole_collector_stays_within_the_grace_period() {
    let (_collector, _dir, mut running) = simulating_into_a_black_hole(&[("TTPULSE_SHUTDOWN_GRACE_SECS", "2")]);
    sigterm(running.0.child().expect("running"));
    let (took, code) = wait_exit(running.0.child().expect("running"), Duration::from_secs(20)).expect("exits");
    eprintln!("exited {code:?} {took:?} after SIGTERM (grace 2 s, black-hole collector)");
    assert!(took < Duration::from_millis(2_800), "the grace is 2 s; it took {took:?}");
}

/// "a second signal exits at once" (docs/operations.md) holds while spans are being flushed too.
#[test]
fn attack_a_second_signal_exits_at_once_while_spans_are_flushed() {
    let (_collector, _dir, mut running) = simulating_into_a_black_hole(&[]);
    sigterm(running.0.child().expect("running"));
    // The embedded pipeline drains in well under a second; then the exporter flush begins.
    std::thread::sleep(Duration::from_millis(1000));
    let exited_already = running.0.child().expect("running").try_wait().expect("wait").is_some();
    sigterm(running.0.child().expect("running"));
    let (took, code) = wait_exit(running.0.child().expect("running"), Duration::from_secs(20)).expect("exits");
    eprintln!("exited {code:?} {took:?} after the second SIGTERM (already exited: {exited_already})");
    assert!(exited_already || took < Duration::from_millis(700), "the second signal took {took:?} to end it");
}

/// A client that forces sampling on every request (a sampled `traceparent`), with a collector
/// that never answers: ingest is not slowed (the exporter's queue is bounded and never waited
/// for), and the process' memory stays bounded.
#[actix_rt::test]
async fn attack_forced_sampling_with_a_black_hole_collector_costs_ingest_nothing() {
    let (collector, _holder) = black_hole();
    let dir = tempfile::tempdir().expect("dir");
    let running = run_embedded(
        dir.path(),
        &[("TTPULSE_OTLP_ENDPOINT", &collector), ("TTPULSE_TRACE_SAMPLE_RATIO", "0"), ("TTPULSE_SOURCE", "none")],
    );
    let url = running.1.clone();
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let rss = || -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", running.0.pid().unwrap_or(0))).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let mut latencies = Vec::new();
    let mut seq = 0u64;
    let mut rss_after_warmup = 0;
    for round in 0..40 {
        // 500 events per request, every one sampled by the client's header.
        let events: Vec<_> = (0..500)
            .map(|_| {
                seq += 1;
                let bid = format!("{}.{:02}", 6850 + seq % 40 / 4, (seq % 4) * 25);
                quote(&format!("f:{seq}"), "ESZ6", &bid, "6900.00")
            })
            .collect();
        let started = Instant::now();
        let answer = client
            .post(format!("{url}/api/ingest"))
            .insert_header(("content-type", "application/json"))
            .insert_header(("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
            .send_body(json!(events).to_string())
            .await
            .expect("POST");
        assert_eq!(answer.status().as_u16(), 200);
        latencies.push(started.elapsed());
        if round == 10 {
            rss_after_warmup = rss();
        }
    }
    latencies.sort();
    let rss_end = rss();
    eprintln!(
        "forced sampling, black-hole collector: ingest of 500 events p50 {:?} max {:?}; RSS {} -> {} KiB",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        rss_after_warmup,
        rss_end
    );
    assert!(latencies[latencies.len() - 1] < Duration::from_secs(2), "an ingest waited on the collector");
    assert!(rss_end < rss_after_warmup + 64 * 1024, "memory grew from {rss_after_warmup} to {rss_end} KiB");
}

/// `ttpulse check` is where an operator learns that a configuration cannot run: an OTLP endpoint
/// that `run` then refuses ("cannot set up the OTLP exporter") must fail the check too, and one
/// with a query string must not silently become `...?x=1/v1/traces`.
#[test]
fn attack_check_refuses_an_otlp_endpoint_that_run_refuses() {
    let dir = tempfile::tempdir().expect("dir");
    for endpoint in ["http://a b", "http:///v1/traces", "http://collector:99999", "http://collector:4318/otlp?x=1"] {
        let out = Command::new(env!("CARGO_BIN_EXE_ttpulse"))
            .arg("check")
            .env_remove("RUST_LOG")
            .env("TTPULSE_DATA_DIR", dir.path())
            .env("TTPULSE_OTLP_ENDPOINT", endpoint)
            .output()
            .expect("check runs");
        assert!(
            !out.status.success(),
            "`check` passed with TTPULSE_OTLP_ENDPOINT={endpoint:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// The frames a session gets for `quotes` ingested ESZ6 quotes: how many were `batch` frames,
/// and the updates they carried, in order (flattened).
async fn frames_for_quotes(
    server: &TestServer,
    ws: &mut crate::common::WsClient,
    round: u64,
    quotes: u64,
) -> (usize, Vec<u64>) {
    ws.subscribe(&["ESZ6"], &[]).await;
    let events: Vec<_> = (1..=quotes)
        .map(|n| {
            let bid = format!("{}.{:02}", 6000 + round * 100 + n / 4, (n % 4) * 25);
            quote(&format!("p{round}:{n}"), "ESZ6", &bid, "6900.00")
        })
        .collect();
    let (status, answer) = server.ingest(&json!(events)).await;
    assert_eq!(status, 200, "{answer}");
    let (mut batches, mut seqs) = (0, Vec::new());
    while (seqs.len() as u64) < quotes {
        let frame = ws.next_json(Duration::from_secs(10)).await.expect("a frame before the timeout");
        match frame["type"].as_str() {
            Some("update") => seqs.push(frame["seq"].as_u64().expect("seq")),
            Some("batch") => {
                batches += 1;
                seqs.extend(frame["updates"].as_array().expect("updates").iter().filter_map(|u| u["seq"].as_u64()));
            }
            _ => {}
        }
    }
    (batches, seqs)
}

/// RFC 6455 (4.1): `Sec-WebSocket-Protocol` may be sent as several header fields, which are
/// logically one. Whatever the server makes of them, it speaks the version it answers: batch
/// frames only to a session whose handshake answer named `ttpulse.v2` (docs/protocol.md: a
/// client that "gets it back in the handshake" receives batches). (Seen at the review: with
/// `ttpulse.v2` in a second header the session sent batches while the handshake answered no
/// protocol, so the client, told version 1, got frames of a type it does not know.)
#[actix_rt::test]
async fn attack_a_session_speaks_the_protocol_its_handshake_answered_with_repeated_headers() {
    use ttpulse_actors::session::BATCH_PROTOCOL;
    let server = TestServer::start().await;
    let url = format!("ws://{}/ws", server.addr);
    let offers =
        [vec!["chat", BATCH_PROTOCOL], vec![BATCH_PROTOCOL, "chat"], vec!["chat, ttpulse.v2x", BATCH_PROTOCOL]];
    for (round, headers) in (0..).zip(offers) {
        let mut request = awc::Client::new().ws(&url);
        for value in &headers {
            request = request.header("sec-websocket-protocol", *value);
        }
        let (response, framed) = request.connect().await.expect("ws connect");
        let answered: Vec<_> =
            response.headers().get_all("sec-websocket-protocol").filter_map(|v| v.to_str().ok()).collect();
        let mut ws = crate::common::WsClient::from_framed(framed);
        let (batches, seqs) = frames_for_quotes(&server, &mut ws, round, 30).await;
        let first = seqs[0];
        assert_eq!(seqs, (first..first + 30).collect::<Vec<_>>(), "every update, in order ({headers:?})");
        assert!(answered.len() <= 1 && answered.iter().all(|p| *p == BATCH_PROTOCOL), "answered {answered:?}");
        assert_eq!(
            batches > 0,
            answered == [BATCH_PROTOCOL],
            "offered {headers:?}, answered {answered:?}, but got {batches} batch frames"
        );
    }
}

/// A session cut off for flooding frees its address's place as its connection is dropped: with
/// one session per address, the same address connects again at once (held at the review).
#[actix_rt::test]
async fn attack_a_cut_off_session_frees_its_address_place() {
    let server = TestServer::start_with(|c| c.sessions.max_connections_per_address = 1).await;
    let addr = server.addr;
    let flood = std::thread::spawn(move || {
        let mut stream = raw_ws_session(addr).expect("upgraded");
        assert!(raw_ws_session(addr).is_none(), "a second session from the address is refused while one is open");
        stream.set_write_timeout(Some(Duration::from_secs(5))).expect("write timeout");
        let burst: Vec<u8> = std::iter::repeat_n(control_frame(0x9), 500).flatten().collect();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) && stream.write_all(&burst).is_ok() {}
    });
    assert!(TestServer::eventually(Duration::from_secs(15), async || flood.is_finished()).await);
    flood.join().expect("flood");
    let again = actix_rt::task::spawn_blocking(move || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) {
            if raw_ws_session(addr).is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    });
    assert!(again.await.expect("join"), "the address's place stayed taken after the cut-off");
}
