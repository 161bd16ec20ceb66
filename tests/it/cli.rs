//! The binary as an operator runs it: clear one-line errors for a taken port, an unusable data
//! folder or a bad setting, `migrate`, and `run` serving the simulator's live stream.

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use ttpulse_harness::{Proc, start_ttpulse};

const BIN: &str = env!("CARGO_BIN_EXE_ttpulse");

fn ttpulse(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    // Tests run side by side: each admin listener on a free port unless a test says otherwise.
    cmd.args(args).env_remove("RUST_LOG").env("TTPULSE_LOG", "warn").env("TTPULSE_ADMIN_ADDR", "127.0.0.1:0");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd
}

fn output(args: &[&str], env: &[(&str, &str)]) -> Output {
    ttpulse(args, env).output().expect("run ttpulse")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("dir");
    let dir = dir.path().to_string_lossy().into_owned();
    let out = output(&["run"], &[("TTPULSE_HTTP_ADDR", &addr), ("TTPULSE_DATA_DIR", &dir), ("TTPULSE_SOURCE", "none")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(err.to_lowercase().contains("address already in use"), "{err}");
}

#[test]
fn an_unusable_data_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let data = file.join("data").to_string_lossy().into_owned();
    let out = output(&["migrate"], &[("TTPULSE_DATA_DIR", &data)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("cannot create the data folder {data}")), "{}", stderr(&out));
}

#[test]
fn bad_settings_are_refused_before_anything_starts() {
    let out = output(&["run"], &[("TTPULSE_SIM_RATE", "200000")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("TTPULSE_SIM_RATE") || stderr(&out).contains("--sim-rate"), "{}", stderr(&out));

    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().to_string_lossy().into_owned();
    let out = output(
        &["run"],
        &[("TTPULSE_DATA_DIR", &data), ("TTPULSE_SOURCE", "replay"), ("TTPULSE_REPLAY_FILE", "/nonexistent/day.jsonl")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("the replay file /nonexistent/day.jsonl does not exist"), "{}", stderr(&out));
}

#[test]
fn migrate_creates_the_database() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("nested").to_string_lossy().into_owned();
    let out = output(&["migrate"], &[("TTPULSE_DATA_DIR", &data)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("is up to date"));
    assert!(dir.path().join("nested/ttpulse.db").is_file());
    // Running it again is harmless.
    assert!(output(&["migrate"], &[("TTPULSE_DATA_DIR", &data)]).status.success());
}

/// Starts `ttpulse run` with `env` (plus free ports); returns the process and the URLs it prints
/// (the public one, and the admin one).
fn spawn_run(env: &[(&str, &str)]) -> (Proc, String, String) {
    let (proc, banner) = start_ttpulse(ttpulse(&[], env).stderr(Stdio::null())).expect("the URLs are printed");
    (proc, banner.url, banner.admin)
}

/// What `make run` does: start with the simulator and serve a live stream at the printed URL.
#[test]
fn run_prints_the_url_and_streams_simulated_updates() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().to_string_lossy().into_owned();
    let (child, url, _) = spawn_run(&[("TTPULSE_DATA_DIR", &data), ("TTPULSE_SIM_RATE", "2000")]);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    actix_rt::System::new().block_on(async move {
        use futures_util::{SinkExt as _, StreamExt as _};
        let ws_url = url.replacen("http", "ws", 1) + "/ws";
        let (_, mut ws) = awc::Client::new().ws(ws_url).connect().await.expect("ws");
        let subscribe = r#"{"op":"subscribe","instruments":["*"],"positions":["*"]}"#;
        ws.send(awc::ws::Message::Text(subscribe.into())).await.expect("send");
        let mut kinds = std::collections::HashSet::new();
        let mut symbols = std::collections::HashSet::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while (kinds.len() < 5 || symbols.len() < 12) && std::time::Instant::now() < deadline {
            let Ok(Some(Ok(awc::ws::Frame::Text(text)))) =
                actix_rt::time::timeout(Duration::from_secs(5), ws.next()).await
            else {
                continue;
            };
            let message: serde_json::Value = serde_json::from_slice(&text).expect("json");
            kinds.insert(format!("{}/{}", message["type"], message["kind"]));
            if message["kind"] == "instrument" {
                symbols.insert(message["data"]["symbol"].to_string());
                let (bid, ask) = (&message["data"]["bid"], &message["data"]["ask"]);
                if let (Some(bid), Some(ask)) = (bid.as_str(), ask.as_str()) {
                    let (bid, ask): (f64, f64) = (bid.parse().expect("bid"), ask.parse().expect("ask"));
                    assert!(bid > 0.0 && bid < ask, "{message}");
                }
            }
        }
        for kind in [
            r#""snapshot"/null"#,
            r#""update"/"instrument""#,
            r#""update"/"candle""#,
            r#""update"/"position""#,
            r#""update"/"fill""#,
        ] {
            assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
        }
        assert_eq!(symbols.len(), 12, "{symbols:?}");
    });
    drop(child);
}

/// SIGTERM: intake stops, everything already processed is stored, and sessions are closed
/// with 1001 (going away). The flush interval is long here, so only the shutdown's own flush
/// can have stored what the client saw.
#[test]
fn a_graceful_shutdown_stores_what_is_in_flight_and_closes_sessions_going_away() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().to_string_lossy().into_owned();
    let (mut child, url, _) =
        spawn_run(&[("TTPULSE_DATA_DIR", &data), ("TTPULSE_SIM_RATE", "3000"), ("TTPULSE_DB_FLUSH_MS", "10000")]);
    let pid = child.pid().expect("running");

    let (seen, close) = actix_rt::System::new().block_on(async move {
        use futures_util::{SinkExt as _, StreamExt as _};
        let (_, mut ws) = awc::Client::new().ws(url.replacen("http", "ws", 1) + "/ws").connect().await.expect("ws");
        ws.send(awc::ws::Message::Text(r#"{"op":"subscribe","instruments":["*"]}"#.into())).await.expect("send");
        let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        let started = std::time::Instant::now();
        let mut signalled = false;
        let mut close = None;
        while let Ok(Some(Ok(frame))) = actix_rt::time::timeout(Duration::from_secs(10), ws.next()).await {
            if !signalled && started.elapsed() > Duration::from_millis(1500) {
                let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
                signalled = true;
            }
            match frame {
                awc::ws::Frame::Text(text) => {
                    let m: serde_json::Value = serde_json::from_slice(&text).expect("json");
                    if m["kind"] == "instrument" {
                        let seq = m["seq"].as_u64().unwrap_or(0);
                        let entry =
                            seen.entry(m["data"]["symbol"].as_str().unwrap_or_default().to_owned()).or_default();
                        *entry = (*entry).max(seq);
                    }
                }
                awc::ws::Frame::Close(reason) => {
                    close = reason.map(|r| u16::from(r.code));
                    break;
                }
                _ => {}
            }
        }
        (seen, close)
    });
    assert_eq!(close, Some(1001), "sessions are closed going away");
    let status = child.child().expect("running").wait().expect("exit");
    assert!(status.success(), "exit status {status}");
    assert!(!seen.is_empty(), "the client saw updates");

    // Every instrument state the client saw is stored (at that seq or later).
    let pool = ttpulse_actors::store::DbPool::open_sqlite(&dir.path().join("ttpulse.db"), 1).expect("db");
    let mut conn = pool.get().expect("conn");
    let catalog = ttpulse_actors::domain::InstrumentCatalog::default_futures();
    let stored = ttpulse_actors::with_conn!(&mut conn, queries::load_snapshot(&catalog)).expect("load");
    for (symbol, seq) in &seen {
        let book =
            stored.books.iter().find(|b| &b.state.symbol == symbol).unwrap_or_else(|| panic!("{symbol} not stored"));
        assert!(book.state.seq >= *seq, "{symbol}: stored seq {} behind the {seq} the client saw", book.state.seq);
    }
}

/// Sends SIGTERM to `child` and waits for it to exit; returns how long that took and its code.
fn terminate(child: &mut Child, signals: usize, limit: Duration) -> (Duration, Option<i32>) {
    let started = std::time::Instant::now();
    for _ in 0..signals {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        std::thread::sleep(Duration::from_millis(200));
    }
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("wait") {
            return (started.elapsed(), status.code());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("still running {limit:?} after SIGTERM");
}

/// An ingester whose broker is unreachable once ignored SIGTERM for over a minute.
#[test]
fn shutdown_is_bounded_whatever_the_broker_does_and_a_second_signal_exits_at_once() {
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").to_string();
    let env = [
        ("TTPULSE_KAFKA_BROKERS", closed.as_str()),
        ("TTPULSE_ROLES", "ingester"),
        ("TTPULSE_SOURCE", "simulator"),
        ("TTPULSE_SIM_RATE", "500"),
        ("TTPULSE_SHUTDOWN_GRACE_SECS", "2"),
    ];
    let (mut child, _url, _) = spawn_run(&env);
    std::thread::sleep(Duration::from_millis(1500));
    let (took, code) = terminate(child.child().expect("running"), 1, Duration::from_secs(15));
    assert!(took >= Duration::from_millis(1500), "it waited for the grace period: {took:?}");
    assert!(took < Duration::from_secs(8), "within the grace period and a margin: {took:?}");
    assert_eq!(code, Some(1), "a cut-short shutdown says so in its exit code");

    let mut env = env.to_vec();
    env.retain(|(k, _)| *k != "TTPULSE_SHUTDOWN_GRACE_SECS");
    env.push(("TTPULSE_SHUTDOWN_GRACE_SECS", "120"));
    let (mut child, _url, _) = spawn_run(&env);
    std::thread::sleep(Duration::from_millis(1500));
    let (took, code) = terminate(child.child().expect("running"), 2, Duration::from_secs(15));
    assert!(took < Duration::from_secs(5), "the second signal exits at once: {took:?}");
    assert_eq!(code, Some(1));
}

/// Starts `ttpulse run` with its data in `data`, logging at info to `log`, with `env`; returns
/// the process and its URL.
fn spawn_run_logging_to(data: &std::path::Path, log: &std::path::Path, env: &[(&str, &str)]) -> (Proc, String) {
    let mut cmd = ttpulse(&[], env);
    cmd.env("TTPULSE_DATA_DIR", data).env("TTPULSE_LOG", "info").stderr(std::fs::File::create(log).expect("log"));
    let (proc, banner) = start_ttpulse(&mut cmd).expect("the URL is printed");
    (proc, banner.url)
}

/// `?access_token=` (how a browser's WebSocket carries a token) never reaches the log.
#[test]
fn tokens_in_query_strings_never_reach_the_log() {
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("stderr.log");
    let env = [("TTPULSE_SOURCE", "none"), ("TTPULSE_AUTH_HS256_SECRET", "a-test-secret-of-at-least-32-bytes!!")];
    let (child, url) = spawn_run_logging_to(dir.path(), &log, &env);
    let url = format!("{url}/");
    let secret = "eyJhbGciOiJIUzI1NiJ9.SECRET-PART-OF-A-TOKEN.c2lnbmF0dXJl";
    let _ = Command::new("curl")
        .args(["-s", "-o", "/dev/null", &format!("{url}api/snapshot?access_token={secret}")])
        .status();
    let _ = Command::new("curl").args(["-s", "-o", "/dev/null", &format!("{url}ws?access_token={secret}")]).status();
    std::thread::sleep(Duration::from_millis(300));
    drop(child);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("GET /api/snapshot"), "requests are logged: {text}");
    assert!(!text.contains("SECRET-PART"), "a token reached the log: {text}");
}

/// `TTPULSE_LOG_FORMAT=json`: every line of the log is one JSON object a log shipper can read,
/// with its level, time and message; a format ttpulse does not know is refused at start.
#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("stderr.log");
    let (child, url) =
        spawn_run_logging_to(dir.path(), &log, &[("TTPULSE_SIM_RATE", "50"), ("TTPULSE_LOG_FORMAT", "json")]);
    let _ = Command::new("curl").args(["-s", "-o", "/dev/null", &format!("{url}/api/snapshot")]).status();
    std::thread::sleep(Duration::from_millis(300));
    drop(child);
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 2, "{text}");
    for line in &lines {
        assert!(line["timestamp"].is_string() && line["level"].is_string(), "{line}");
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l["fields"]["message"].as_str().is_some_and(|m| m.contains("GET /api/snapshot"))),
        "the request is logged: {text}"
    );

    let refused = output(&["run"], &[("TTPULSE_LOG_FORMAT", "xml")]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("TTPULSE_LOG_FORMAT is `xml`"), "{}", stderr(&refused));
}

#[test]
fn kafka_settings_that_would_break_the_delivery_guarantee_are_refused() {
    for (name, value, shown) in [
        ("TTPULSE_KAFKA_ENABLE_AUTO_COMMIT", "true", "enable.auto.commit=true"),
        ("TTPULSE_KAFKA_acks", "1", "acks=1"),
        ("TTPULSE_KAFKA_ENABLE_IDEMPOTENCE", "false", "enable.idempotence=false"),
    ] {
        let out =
            output(&["run"], &[("TTPULSE_KAFKA_BROKERS", "127.0.0.1:1"), ("TTPULSE_ROLES", "ingester"), (name, value)]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(stderr(&out).contains(&format!("`{shown}`")), "{name}: {}", stderr(&out));
    }
}

#[test]
fn check_reports_each_service_and_fails_when_one_is_unreachable() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().to_string_lossy().into_owned();
    let free = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").to_string();
    let ok = output(&["check"], &[("TTPULSE_DATA_DIR", &data), ("TTPULSE_HTTP_ADDR", &free)]);
    let text = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(ok.status.success(), "{text}{}", stderr(&ok));
    assert!(text.contains("ok    database") && text.contains("all 4 checks passed"), "{text}");

    let closed = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let bad = output(
        &["check"],
        &[
            ("TTPULSE_DATA_DIR", &data),
            ("TTPULSE_HTTP_ADDR", &free),
            ("TTPULSE_KAFKA_BROKERS", &format!("127.0.0.1:{closed}")),
            ("TTPULSE_REDIS_URL", &format!("redis://:s3cret@127.0.0.1:{closed}/")),
        ],
    );
    let text = String::from_utf8_lossy(&bad.stdout).into_owned();
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("FAIL  Kafka 127.0.0.1:{closed}: unreachable")), "{text}");
    assert!(text.contains("FAIL  Redis redis://:***@"), "{text}");
    assert!(!text.contains("s3cret") && !stderr(&bad).contains("s3cret"), "the password leaked:\n{text}");
    assert!(stderr(&bad).contains("2 of 6 checks failed"), "{}", stderr(&bad));
}

/// Redis over TLS with a CA made here: `rediss://` with TTPULSE_REDIS_CA_FILE connects, and a
/// plaintext `redis://` to the TLS port fails with a clear error, as do a CA file with a
/// plaintext URL, an unreadable CA file and one that holds no certificate.
#[test]
fn redis_over_tls_with_a_private_ca() {
    let dir = tempfile::tempdir().expect("dir");
    make_ca_and_server_cert(dir.path());
    let d = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let redis = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args([
            "--tls-cert-file",
            &d("server.crt"),
            "--tls-key-file",
            &d("server.key"),
            "--tls-ca-cert-file",
            &d("ca.crt"),
        ])
        .args(["--tls-auth-clients", "no", "--dir", &d("")])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server with TLS");
    let _redis = Proc::adopt(redis);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }

    let data = d("data");
    let free = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").to_string();
    // check needs a broker setting to look at Redis at all (distributed mode); a closed port is
    // fine: only the Redis line matters here.
    let check = |url: &str, ca: Option<&str>| {
        let mut env = vec![
            ("TTPULSE_DATA_DIR", data.clone()),
            ("TTPULSE_HTTP_ADDR", free.clone()),
            ("TTPULSE_KAFKA_BROKERS", "127.0.0.1:1".to_owned()),
            ("TTPULSE_REDIS_URL", url.to_owned()),
        ];
        if let Some(ca) = ca {
            env.push(("TTPULSE_REDIS_CA_FILE", ca.to_owned()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        String::from_utf8_lossy(&output(&["check"], &env).stdout).into_owned()
    };
    let tls = check(&format!("rediss://localhost:{port}/"), Some(&d("ca.crt")));
    assert!(tls.contains(&format!("ok    Redis rediss://localhost:{port}/: reachable (PONG)")), "{tls}");
    let untrusted = check(&format!("rediss://localhost:{port}/"), None);
    assert!(untrusted.contains("FAIL  Redis") && untrusted.to_lowercase().contains("certificate"), "{untrusted}");
    let plain = check(&format!("redis://127.0.0.1:{port}/"), None);
    assert!(plain.contains(&format!("FAIL  Redis redis://127.0.0.1:{port}/: unreachable")), "{plain}");
    assert!(plain.contains("use rediss://"), "{plain}");
    let ca_without_tls = check(&format!("redis://127.0.0.1:{port}/"), Some(&d("ca.crt")));
    assert!(ca_without_tls.contains("the Redis URL must use TLS (rediss://)"), "{ca_without_tls}");
    let missing = check(&format!("rediss://localhost:{port}/"), Some(&d("no-such-ca.crt")));
    assert!(missing.contains("cannot read the Redis CA file") && missing.contains("no-such-ca.crt"), "{missing}");
    let not_pem = check(&format!("rediss://localhost:{port}/"), Some(&d("server.key")));
    assert!(not_pem.contains("holds no PEM certificate"), "{not_pem}");
    let corrupt = dir.path().join("corrupt.crt");
    std::fs::write(&corrupt, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        .expect("write");
    let refused = check(&format!("rediss://localhost:{port}/"), Some(&corrupt.to_string_lossy()));
    let line = refused.lines().find(|l| l.contains("FAIL  Redis")).unwrap_or_default().to_owned();
    assert!(line.contains("corrupt.crt") && line.contains("was refused"), "{refused}");
    let reason = line.split("was refused: ").nth(1).unwrap_or_default();
    assert!(!reason.is_empty() && !line[..line.len() - reason.len()].contains(reason), "said twice: {line}");
}

/// The Grafana dashboard in deploy/ parses and only queries metrics ttpulse defines.
#[test]
fn the_grafana_dashboard_queries_real_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../deploy/grafana-dashboard.json")).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for target in panels.iter().flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default()) {
        assert_real_metrics(target["expr"].as_str().expect("expr"));
    }
}

/// Every `ttpulse_*` name in a PromQL expression is a metric ttpulse defines.
fn assert_real_metrics(expr: &str) {
    let defined = include_str!("../../actors/src/metrics.rs");
    for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("ttpulse_")) {
        let name = word.trim_start_matches("ttpulse_");
        let name = name.strip_suffix("_bucket").unwrap_or(name);
        assert!(defined.contains(&format!("\"{name}\"")), "`{word}` in `{expr}` is not a ttpulse metric");
    }
}

/// deploy/prometheus/alerts.yml passes `promtool check rules`, its unit tests
/// (`promtool test rules`: each alert fires on the series it is for, and not before) pass, and it
/// watches only metrics ttpulse has. promtool comes from Debian's prometheus package
/// (scripts/ensure-test-deps.sh installs it).
#[test]
fn the_alert_rules_pass_promtool_and_watch_real_metrics() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");
    for args in [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("promtool ({e}): run scripts/ensure-test-deps.sh"));
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rules = include_str!("../../deploy/prometheus/alerts.yml");
    let exprs: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("expr:")).collect();
    assert!(exprs.len() >= 6, "{exprs:?}");
    for expr in exprs {
        assert_real_metrics(expr);
    }
}

fn make_ca_and_server_cert(dir: &std::path::Path) {
    let d = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=ttpulse test CA",
        "-keyout",
        &d("ca.key"),
        "-out",
        &d("ca.crt"),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &d("server.key"),
        "-out",
        &d("server.csr"),
    ]);
    std::fs::write(d("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        &d("server.csr"),
        "-CA",
        &d("ca.crt"),
        "-CAkey",
        &d("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &d("san.ext"),
        "-out",
        &d("server.crt"),
    ]);
    openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", &d("server.key"), "-out", &d("server.pk8")]);
}

/// Kafka over TLS: the broker started with --cert/--key; ttpulse reaches it through librdkafka
/// settings alone (security.protocol=SSL, ssl.ca.location) and events flow through it.
#[test]
fn kafka_over_tls_is_configuration() {
    let dir = tempfile::tempdir().expect("dir");
    make_ca_and_server_cert(dir.path());
    let d = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let nisshi = ttpulse_harness::nisshi().unwrap_or_else(|e| panic!("{e}"));
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let listener = format!("tcp://127.0.0.1:{port}");
    let broker = Command::new(&nisshi)
        .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener])
        .args(["--storage-engine", "memory://nisshi/", "--group-initial-rebalance-delay", "200ms"])
        .args(["--cert", &d("server.crt"), "--key", &d("server.pk8")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", nisshi.display()));
    let _broker = Proc::adopt(broker);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let brokers = format!("127.0.0.1:{port}");
    let data = d("data");
    let ca = d("ca.crt");
    let tls: Vec<(&str, &str)> = vec![
        ("TTPULSE_ROLES", "ingester,processor"),
        ("TTPULSE_KAFKA_BROKERS", &brokers),
        ("TTPULSE_DATA_DIR", &data),
        ("TTPULSE_KAFKA_security.protocol", "SSL"),
        ("TTPULSE_KAFKA_ssl.ca.location", &ca),
    ];
    let check = |env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        env.push(("TTPULSE_HTTP_ADDR", "127.0.0.1:0"));
        String::from_utf8_lossy(&output(&["check"], &env).stdout).into_owned()
    };
    let ok = check(&tls);
    assert!(ok.contains(&format!("ok    Kafka {brokers}: reachable")), "{ok}");
    let plaintext = check(&tls[..3]);
    assert!(plaintext.contains(&format!("FAIL  Kafka {brokers}: unreachable")), "{plaintext}");
    let untrusted = check(&tls[..4]);
    assert!(untrusted.contains(&format!("FAIL  Kafka {brokers}: unreachable")), "{untrusted}");

    // Events go through the TLS broker: ingested, consumed by the processor, stored.
    let mut env = tls.clone();
    env.push(("TTPULSE_SOURCE", "none"));
    let (_child, url, admin) = spawn_run(&env);
    let stored = actix_rt::System::new().block_on(async move {
        let body =
            r#"[{"type":"trade","event_id":"tls:1","instrument":"ESZ6","price":"6850.25","qty":7,"aggressor":"buy"}]"#;
        let response = awc::Client::new()
            .post(format!("{url}/api/ingest"))
            .insert_header(("content-type", "application/json"))
            .send_body(body)
            .await
            .map(|r| r.status().as_u16());
        assert_eq!(response.ok(), Some(200), "ingest over the TLS broker");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(mut r) = awc::Client::new().get(format!("{admin}/metrics")).send().await
                && let Ok(body) = r.body().await
                && String::from_utf8_lossy(&body).contains(r#"ttpulse_events_processed_total{type="trade"} 1"#)
            {
                return true;
            }
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
        false
    });
    assert!(stored, "the trade was not consumed back through the TLS broker");
}
