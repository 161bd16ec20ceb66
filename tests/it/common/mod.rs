//! Test harness: a real ttpulse server on a free port with its own data folder, an HTTP client
//! and a WebSocket client.

#![allow(dead_code)]

pub mod private_pg;
pub mod stack;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use awc::ws;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use ttpulse::config::Config;
use ttpulse::http;
use ttpulse::wiring::Pipeline;

pub struct TestServer {
    pub addr: SocketAddr,
    /// The admin listener (`/admin/*`, `/metrics`).
    pub admin_addr: SocketAddr,
    pub pipeline: Pipeline,
    pub handle: ttpulse::http::Handles,
    pub data_dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(data_dir, adjust).await
    }

    /// Starts a server on an existing data folder (e.g. to test a restart).
    pub async fn start_in(data_dir: tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::for_tests(data_dir.path().to_owned());
        adjust(&mut config);
        let admin_token = config.access.admin_token.clone();
        let running = http::start(config).await.expect("server starts");
        let handle = running.handle.clone();
        actix_rt::spawn(running.server);
        let server =
            Self { addr: running.addr, admin_addr: running.admin_addr, pipeline: running.pipeline, handle, data_dir };
        // Ready when every actor runs (the processor has restored its state).
        let health = server.url("/admin/health");
        let ready = Self::eventually(Duration::from_secs(10), async || {
            let mut request = client().get(&health);
            if let Some(token) = &admin_token {
                request = request.bearer_auth(token);
            }
            request.send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(ready, "server not ready: {:?}", server.get_json("/admin/health").await);
        server
    }

    pub async fn stop(self) -> tempfile::TempDir {
        self.handle.stop(true).await;
        self.data_dir
    }

    /// The URL of `path`: on the admin listener for `/admin/*` and `/metrics`, else on the
    /// public one.
    pub fn url(&self, path: &str) -> String {
        let admin = path.starts_with("/admin/") || path == "/metrics";
        format!("http://{}{}", if admin { self.admin_addr } else { self.addr }, path)
    }

    /// The URL of `path` on the public listener, whatever it is.
    pub fn public_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        get_json(&self.url(path)).await
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        get_text(&self.url(path)).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<String>) -> (u16, Value) {
        post(&self.url(path), body).await
    }

    pub async fn ingest(&self, events: &Value) -> (u16, Value) {
        self.post_raw("/api/ingest", events.to_string()).await
    }

    /// Row counts per table, read straight from the database.
    pub fn table_counts(&self) -> HashMap<&'static str, i64> {
        let mut conn = self.pipeline.db_pool.as_ref().expect("a database").get().expect("connection");
        let counts = ttpulse_actors::with_conn!(&mut conn, queries::table_counts()).expect("counts");
        counts.into_iter().collect()
    }

    /// Asserts that events sent more than once were applied once: the `(fills, trades)` rows
    /// stored, the account's net position in its one instrument, and the instrument's volume.
    pub async fn assert_applied_once(
        &self,
        (fills, trades): (i64, i64),
        account: &str,
        net_qty: i64,
        instrument: &str,
        volume: i64,
    ) {
        let counts = self.table_counts();
        assert_eq!((counts["fills"], counts["trades"]), (fills, trades), "stored once");
        let (_, positions) = self.get_json(&format!("/api/positions?account={account}")).await;
        assert_eq!(positions[0]["net_qty"], net_qty, "applied once: {positions}");
        let (_, snapshot) = self.get_json(&format!("/api/snapshot?instruments={instrument}")).await;
        assert_eq!(snapshot["instruments"][0]["volume"], volume, "{snapshot}");
    }

    pub async fn ws(&self) -> WsClient {
        WsClient::connect(&format!("ws://{}/ws", self.addr)).await
    }

    pub async fn eventually<F: AsyncFnMut() -> bool>(timeout: Duration, check: F) -> bool {
        eventually(timeout, check).await
    }
}

/// The metric line `name{labels} value` as a number (0 when absent).
pub fn metric(metrics: &str, series: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

/// Whether `got` holds an update of every `(key, seq)` in `wanted`.
pub fn holds_all(got: &[Value], wanted: &[(&str, u64)]) -> bool {
    wanted.iter().all(|&(key, seq)| got.iter().any(|u| u["key"] == key && u["seq"] == seq))
}

/// Waits until `check` holds, polling every 20 ms, for at most `timeout`.
pub async fn eventually<F: AsyncFnMut() -> bool>(timeout: Duration, mut check: F) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(90)).finish()
}

pub async fn get_json(url: &str) -> (u16, Value) {
    let (status, text) = get_text(url).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn get_text(url: &str) -> (u16, String) {
    match client().get(url).send().await {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let body = resp.body().limit(64 * 1024 * 1024).await.unwrap_or_default();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Err(e) => (0, e.to_string()),
    }
}

pub async fn post(url: &str, body: impl Into<String>) -> (u16, Value) {
    let body: String = body.into();
    let mut resp =
        client().post(url).insert_header(("content-type", "application/json")).send_body(body).await.expect("POST");
    let status = resp.status().as_u16();
    let body = resp.body().limit(16 * 1024 * 1024).await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

pub struct WsClient {
    framed: actix_codec::Framed<awc::BoxedSocket, ws::Codec>,
}

impl WsClient {
    pub fn from_framed(framed: actix_codec::Framed<awc::BoxedSocket, ws::Codec>) -> Self {
        WsClient { framed }
    }

    pub async fn connect(url: &str) -> Self {
        let (_, framed) = awc::Client::new().ws(url).connect().await.expect("ws connect");
        WsClient { framed }
    }

    /// Connects offering wire version 2 (batched frames), and checks the server answered it.
    pub async fn connect_batched(url: &str) -> Self {
        let protocol = ttpulse_actors::session::BATCH_PROTOCOL;
        let (response, framed) = awc::Client::new().ws(url).protocols([protocol]).connect().await.expect("ws connect");
        let chosen = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
        assert_eq!(chosen, Some(protocol), "the server answers with the protocol it speaks");
        WsClient { framed }
    }

    pub async fn send(&mut self, message: Value) {
        self.framed.send(ws::Message::Text(message.to_string().into())).await.expect("ws send");
    }

    pub async fn subscribe(&mut self, instruments: &[&str], positions: &[&str]) -> Value {
        self.send(json!({"op": "subscribe", "instruments": instruments, "positions": positions})).await;
        self.next_of_type("snapshot", Duration::from_secs(5)).await.expect("snapshot")
    }

    /// The next JSON text message, answering pings; None on timeout or close.
    pub async fn next_json(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let frame = actix_rt::time::timeout(left, self.framed.next()).await.ok()??.ok()?;
            match frame {
                ws::Frame::Text(bytes) => return serde_json::from_slice(&bytes).ok(),
                ws::Frame::Ping(p) => {
                    let _ = self.framed.send(ws::Message::Pong(p)).await;
                }
                ws::Frame::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// The close frame's code, if the server closes within `timeout`.
    pub async fn close_code(&mut self, timeout: Duration) -> Option<u16> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let frame = actix_rt::time::timeout(left, self.framed.next()).await.ok()??.ok()?;
            if let ws::Frame::Close(reason) = frame {
                return reason.map(|r| u16::from(r.code));
            }
        }
    }

    pub async fn next_of_type(&mut self, kind: &str, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let message = self.next_json(left).await?;
            if message["type"] == kind {
                return Some(message);
            }
        }
    }

    /// Collects updates until `done` says so (or the timeout passes).
    /// Updates (those of batch frames too) until `done` says so or `timeout` passes.
    pub async fn updates_until(&mut self, timeout: Duration, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while !done(&got) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.next_json(left).await {
                Some(m) if m["type"] == "update" => got.push(m),
                // Wire version 2: a batch frame's updates, in order.
                Some(m) if m["type"] == "batch" => got.extend(m["updates"].as_array().cloned().unwrap_or_default()),
                Some(_) => {}
                None => break,
            }
        }
        got
    }
}

pub fn quote(id: &str, symbol: &str, bid: &str, ask: &str) -> Value {
    json!({"type": "quote", "event_id": id, "instrument": symbol, "bid": bid, "bid_qty": 5, "ask": ask, "ask_qty": 7})
}

pub fn trade(id: &str, symbol: &str, price: &str, qty: i64, aggressor: &str) -> Value {
    json!({"type": "trade", "event_id": id, "instrument": symbol, "price": price, "qty": qty, "aggressor": aggressor})
}

pub fn fill(id: &str, account: &str, fill_id: &str, symbol: &str, side: &str, price: &str, qty: i64) -> Value {
    json!({"type": "fill", "event_id": id, "account": account, "order_id": format!("o-{fill_id}"), "fill_id": fill_id,
           "instrument": symbol, "side": side, "price": price, "qty": qty})
}

/// A WebSocket session on a plain blocking socket, from one documentation address (TEST-NET-2,
/// passed on in X-Real-IP as a proxy on this host does); None if the upgrade is refused.
pub fn raw_ws_session(addr: std::net::SocketAddr) -> Option<std::net::TcpStream> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nX-Real-IP: 198.51.100.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(upgrade.as_bytes()).ok()?;
    let mut head = [0u8; 256];
    let got = stream.read(&mut head).ok()?;
    head[..got].starts_with(b"HTTP/1.1 101").then_some(stream)
}

/// A `ttpulse run` process (every role, embedded), killed when dropped; `.1` is its URL.
pub struct Running(pub ttpulse_harness::Proc, pub String);

/// Starts `ttpulse run` on free ports with its data in `data`, no source unless `env` names one,
/// and span export every 100 ms (instead of 5 s) when `env` sets an OTLP endpoint.
pub fn run_embedded(data: &std::path::Path, env: &[(&str, &str)]) -> Running {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ttpulse"));
    cmd.env("TTPULSE_LOG", "warn")
        .env("TTPULSE_DATA_DIR", data)
        .env("TTPULSE_SOURCE", "none")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stderr(std::process::Stdio::inherit());
    for (key, value) in env {
        cmd.env(key, value);
    }
    let (proc, banner) = ttpulse_harness::start_ttpulse(&mut cmd).unwrap_or_else(|e| panic!("{e}"));
    Running(proc, banner.url)
}
